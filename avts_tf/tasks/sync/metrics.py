"""Metrics of the synchronization task."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="avts_tf")
class BalancedSyncAccuracy(keras.metrics.Metric):
    """Mean of the accuracy on in-sync pairs and the accuracy on out-of-sync pairs.

    Balanced, so the number stays comparable whatever the ratio of positives to
    negatives of one kind in a batch. A pair is correct when the predicted in-sync
    flag equals its label; pairs with zero weight are ignored. NaN until it has seen at
    least one positive and one negative: an accuracy on one class alone would read as a
    balanced one (1.0 for a model that calls everything in sync).
    """

    def __init__(self, name: str = "sync_accuracy", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.pos_correct = self.add_variable((), initializer="zeros", name="pos_correct")
        self.pos_count = self.add_variable((), initializer="zeros", name="pos_count")
        self.neg_correct = self.add_variable((), initializer="zeros", name="neg_correct")
        self.neg_count = self.add_variable((), initializer="zeros", name="neg_count")

    def update_state(self, in_sync, predicted_in_sync, sample_weight=None):  # noqa: D102
        y = tf.cast(in_sync, tf.float32)
        correct = tf.cast(tf.equal(tf.cast(in_sync, tf.bool), predicted_in_sync), tf.float32)
        w = tf.ones_like(y) if sample_weight is None else tf.cast(sample_weight, tf.float32)
        self.pos_correct.assign_add(tf.reduce_sum(correct * y * w))
        self.pos_count.assign_add(tf.reduce_sum(y * w))
        self.neg_correct.assign_add(tf.reduce_sum(correct * (1.0 - y) * w))
        self.neg_count.assign_add(tf.reduce_sum((1.0 - y) * w))

    def result(self):  # noqa: D102
        pos = tf.math.divide_no_nan(self.pos_correct, self.pos_count)
        neg = tf.math.divide_no_nan(self.neg_correct, self.neg_count)
        both = tf.logical_and(self.pos_count > 0, self.neg_count > 0)
        return tf.where(both, 0.5 * (pos + neg), tf.constant(float("nan")))
