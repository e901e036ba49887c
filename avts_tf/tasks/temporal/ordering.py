"""Temporal-ordering labels of two views from their intervals in original time."""

from __future__ import annotations

import tensorflow as tf

ORDER_CLASSES = ("overlap", "i_before_j", "j_before_i")
OVERLAP, I_BEFORE_J, J_BEFORE_I = 0, 1, 2


def order_labels(
    start_i: tf.Tensor, span_i: tf.Tensor, start_j: tf.Tensor, span_j: tf.Tensor
) -> tf.Tensor:
    """Ordering class of views ``i`` and ``j`` (element-wise, broadcasting).

    Each view covers the half-open interval ``[start, start + span)`` in samples of the
    original time, so a view ending where the other starts comes before it.

    Args:
        start_i: First sample of view ``i`` (any integer dtype).
        span_i: Samples covered by view ``i``.
        start_j: First sample of view ``j``.
        span_j: Samples covered by view ``j``.

    Returns:
        int32 labels: 0 overlapping, 1 ``i`` before ``j``, 2 ``j`` before ``i``
        (``ORDER_CLASSES``).
    """
    start_i, span_i, start_j, span_j = (
        tf.cast(x, tf.int64) for x in (start_i, span_i, start_j, span_j)
    )
    i_first = start_i + span_i <= start_j
    j_first = start_j + span_j <= start_i
    overlap = tf.zeros_like(i_first, tf.int32)
    labels = tf.where(j_first, tf.constant(J_BEFORE_I, tf.int32), overlap)
    return tf.where(i_first, tf.constant(I_BEFORE_J, tf.int32), labels)
