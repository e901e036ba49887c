"""Loss functions of the AVTS objectives (per pair; reduction is the caller's job)."""

from __future__ import annotations

import tensorflow as tf


def euclidean_distance(a: tf.Tensor, b: tf.Tensor, epsilon: float = 1e-12) -> tf.Tensor:
    """Row-wise ``||a - b||_2`` with a gradient that stays finite at zero distance."""
    squared = tf.reduce_sum(tf.math.squared_difference(a, b), axis=-1)
    return tf.sqrt(squared + epsilon)


def contrastive_loss(distance: tf.Tensor, in_sync: tf.Tensor, margin: float) -> tf.Tensor:
    """AVTS contrastive loss per pair: ``y d^2 + (1 - y) max(margin - d, 0)^2``.

    Args:
        distance: ``[N]`` distances between video and audio embeddings.
        in_sync: ``[N]`` labels, 1 for in-sync pairs and 0 for negatives.
        margin: The margin ``eta`` that negatives are pushed beyond.

    Returns:
        ``[N]`` float32 losses; average them over the global batch.
    """
    distance = tf.cast(distance, tf.float32)
    y = tf.cast(in_sync, tf.float32)
    return y * tf.square(distance) + (1.0 - y) * tf.square(tf.nn.relu(margin - distance))


def sync_cross_entropy(logits: tf.Tensor, in_sync: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy per pair for the fusion head's in-sync logit."""
    return tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(in_sync, tf.float32), logits=tf.cast(logits, tf.float32)
    )
