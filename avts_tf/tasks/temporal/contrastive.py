"""InfoNCE with a feature queue of sample-dependent extra positives and negatives.

The paper (Jenni, Black & Collomosse, AAAI 2023) states only that the usual contrastive
pairs are "supplemented with sample-dependent positives and negatives sampled from the
evolving feature space". How they are sampled is **our choice** (see ``docs/temporal.md``),
modelled on NNCLR (Dwibedi et al., 2021; keras-io "Self-supervised contrastive learning
with NNCLR"): a FIFO queue of stop-gradient keys with their video ids supplies

* an extra positive per anchor: the nearest queue neighbour of the anchor's positive key;
* extra negatives per anchor: the nearest queue neighbour of each in-batch negative key;

entries of the anchor's own video are never used, neighbours are looked up before the
batch is enqueued, and the extras switch on once the queue is full.

Everything here is a pure TF function (no Keras state), usable inside ``tf.function``
with ``jit_compile=True``; the task owns the queue variables and calls :func:`enqueue`
after the loss.
"""

from __future__ import annotations

import tensorflow as tf

# Logit of a masked-out term: exp() of it is exactly 0 in float32, yet it keeps
# logsumexp and its gradient finite when every term of a row is masked.
_MASKED_LOGIT = -1e9


def _l2_normalize(x: tf.Tensor) -> tf.Tensor:
    return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1)


def _masked_argmax(scores: tf.Tensor, eligible: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Row-wise argmax of ``scores [N, Q]`` over ``eligible [N, Q]`` entries.

    Returns:
        ``(indices [N] int32, found [N] bool)``; a row without eligible entries gets
        index 0 and ``found=False``.
    """
    # The lowest finite value, not -inf: ``tf.debugging.enable_check_numerics`` stays usable.
    masked = tf.where(eligible, scores, tf.fill(tf.shape(scores), scores.dtype.min))
    indices = tf.argmax(masked, axis=-1, output_type=tf.int32)
    found = tf.reduce_any(eligible, axis=-1)
    return tf.where(found, indices, tf.zeros_like(indices)), found


def nearest(
    queries: tf.Tensor,
    queue: tf.Tensor,
    query_ids: tf.Tensor,
    queue_ids: tf.Tensor,
    valid: tf.Tensor,
) -> tf.Tensor:
    """Cosine nearest neighbour of each query in the queue, other videos only.

    Args:
        queries: ``[B, D]`` L2-normalised query features.
        queue: ``[Q, D]`` L2-normalised queue entries.
        query_ids: ``[B]`` integer video id of each query.
        queue_ids: ``[Q]`` integer video id of each queue entry.
        valid: ``[Q]`` bool, ``False`` for entries not filled yet.

    Returns:
        ``[B]`` int32 index of the queue entry with the largest dot product among the
        valid entries whose video id differs from the query's; 0 where there is none.
    """
    return _nearest(queries, queue, query_ids, queue_ids, valid)[0]


def _nearest(
    queries: tf.Tensor,
    queue: tf.Tensor,
    query_ids: tf.Tensor,
    queue_ids: tf.Tensor,
    valid: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`nearest` plus ``found [B]`` (an eligible entry exists)."""
    scores = tf.matmul(tf.cast(queries, tf.float32), tf.cast(queue, tf.float32), transpose_b=True)
    other_video = tf.not_equal(query_ids[:, None], tf.cast(queue_ids, query_ids.dtype)[None, :])
    eligible = tf.logical_and(other_video, tf.cast(valid, tf.bool)[None, :])
    return _masked_argmax(scores, eligible)


def _negative_neighbours(
    keys: tf.Tensor, queue: tf.Tensor, queue_ids: tf.Tensor, anchor_ids: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """For anchor ``i``, key ``j``: the nearest entry of ``keys[j]`` not of video ``anchor_ids[i]``.

    Exact in ``O(B Q)`` rather than ``O(B^2 Q)``: with ``n1[j]`` the nearest entry of
    ``keys[j]`` overall and ``n2[j]`` its nearest entry of another video than ``n1[j]``'s,
    the answer is ``n1[j]`` unless ``n1[j]`` belongs to video ``anchor_ids[i]``, and then it
    is ``n2[j]`` (excluding video ``anchor_ids[i]`` is then excluding ``n1[j]``'s video).

    Returns:
        ``(indices [A, B] int32, found [A, B] bool)``, indexed ``[i, j]``.
    """
    scores = tf.matmul(keys, queue, transpose_b=True)  # [B, Q]
    all_entries = tf.ones_like(scores, dtype=tf.bool)
    n1, found1 = _masked_argmax(scores, all_entries)
    n1_id = tf.gather(queue_ids, n1)  # [B]
    n2, found2 = _masked_argmax(scores, tf.not_equal(queue_ids[None, :], n1_id[:, None]))
    n1_is_anchor_video = tf.equal(n1_id[None, :], anchor_ids[:, None])  # [i, j]
    indices = tf.where(n1_is_anchor_video, n2[None, :], n1[None, :])
    found = tf.where(n1_is_anchor_video, found2[None, :], found1[None, :])
    return indices, found


def info_nce_with_queue(
    anchors: tf.Tensor,
    keys: tf.Tensor,
    ids: tf.Tensor,
    queue: tf.Tensor,
    queue_ids: tf.Tensor,
    queue_full: tf.Tensor | bool,
    temperature: float = 0.1,
    extra_positives: bool = True,
    extra_negatives: bool = True,
    offset: tf.Tensor | int = 0,
) -> tf.Tensor:
    """Multi-positive InfoNCE per anchor, with queue neighbours as extra pairs.

    With ``a = anchors[i]``, ``k = keys`` (both L2-normalised here), the queue ``q``
    (L2-normalised here, under ``tf.stop_gradient``) and ``s(x, y) = x . y / temperature``:

    * positives ``P_i``: ``k[i]``; plus, when ``queue_full`` and ``extra_positives``,
      ``q[nearest(k[i])]`` over entries whose video id differs from ``ids[i]``;
    * negatives ``N_i``: ``k[j]`` for every ``j`` with ``ids[j] != ids[i]`` (same-video
      keys, ``i`` included, are left out, not used as negatives); plus, when
      ``queue_full`` and ``extra_negatives``, for each such ``j`` the nearest queue entry
      of ``k[j]`` whose video id differs from ``ids[i]`` (duplicates kept);
    * ``loss_i = mean_{p in P_i} -log(e(p) / (e(p) + sum_{n in N_i} e(n)))`` with
      ``e(x) = exp(s(a, x))``.

    The multi-positive form (each positive against all negatives, averaged over the
    positives) is **our choice**; the paper does not state its loss. So are the NNCLR-style
    neighbours, the masking of the anchor's video, and ``temperature=0.1``. A
    neighbour that cannot be found (every entry is of the anchor's video) is dropped.

    Args:
        anchors: ``[B, D]`` anchor features (e.g. video projections).
        keys: ``[B, D]`` their positive keys (another view, or the aligned audio).
        ids: ``[B]`` integer video id of example ``i`` (shared by anchor and key).
        queue: ``[Q, D]`` past keys; gets no gradient.
        queue_ids: ``[Q]`` integer video ids of the queue entries.
        queue_full: Scalar bool (tensor or Python); the queue extras are used only when
            true, via ``tf.where``, so it may change inside ``tf.function`` / XLA.
        temperature: Softmax temperature ``tau``; 0.1 is our choice.
        extra_positives: Use the queue's extra positive (our choice, on by default).
        extra_negatives: Use the queue's extra negatives (our choice, on by default).
        offset: Under several replicas, ``keys`` and ``ids`` are the whole step's
            (gathered over replicas, ``[G, D]`` and ``[G]``) while ``anchors`` are this
            replica's ``B``: anchor ``i`` is example ``offset + i`` of the step, so every
            anchor meets the negatives it would meet on one device.

    Returns:
        ``[B]`` float32 losses; average them over the global batch.
    """
    a = _l2_normalize(anchors)
    k = _l2_normalize(keys)
    q = tf.stop_gradient(_l2_normalize(queue))
    ids = tf.convert_to_tensor(ids)
    queue_ids = tf.cast(tf.stop_gradient(queue_ids), ids.dtype)
    queue_full = tf.cast(queue_full, tf.bool)
    batch = tf.shape(a)[0]
    inv_tau = 1.0 / temperature
    own = tf.cast(offset, tf.int32) + tf.range(batch)  # Each anchor's example in the step.
    anchor_ids = tf.gather(ids, own)
    positive_keys = tf.gather(k, own)

    # Keys are looked up without gradient, like the queue; the gradient reaches them only
    # through the in-batch terms.
    k_lookup = tf.stop_gradient(k)
    negative_mask = tf.not_equal(anchor_ids[:, None], ids[None, :])  # [i, j]

    positive_logits = [tf.reduce_sum(a * positive_keys, axis=-1) * inv_tau]  # [B]
    positive_weights = [tf.ones([batch], tf.float32)]
    negative_logits = [tf.matmul(a, k, transpose_b=True) * inv_tau]  # [i, j]
    negative_masks = [negative_mask]

    if extra_positives:
        valid = tf.ones_like(queue_ids, dtype=tf.bool)
        index, found = _nearest(tf.gather(k_lookup, own), q, anchor_ids, queue_ids, valid)
        use = tf.logical_and(found, queue_full)
        positive_logits.append(tf.reduce_sum(a * tf.gather(q, index), axis=-1) * inv_tau)
        positive_weights.append(tf.cast(use, tf.float32))
    if extra_negatives:
        index, found = _negative_neighbours(k_lookup, q, queue_ids, anchor_ids)  # [i, j]
        neighbours = tf.gather(q, index)  # [i, j, D]
        negative_logits.append(tf.einsum("id,ijd->ij", a, neighbours) * inv_tau)
        negative_masks.append(tf.logical_and(tf.logical_and(negative_mask, found), queue_full))

    negatives = tf.concat(negative_logits, axis=1)
    negatives = tf.where(tf.concat(negative_masks, axis=1), negatives, _MASKED_LOGIT)
    negatives_lse = tf.reduce_logsumexp(negatives, axis=1)  # [B]
    positives = tf.stack(positive_logits, axis=1)  # [B, P]
    weights = tf.stack(positive_weights, axis=1)
    # -log(e^p / (e^p + e^lse)) = softplus(lse - p), stable at any scale.
    per_positive = tf.nn.softplus(negatives_lse[:, None] - positives)
    return tf.reduce_sum(per_positive * weights, axis=1) / tf.reduce_sum(weights, axis=1)


def enqueue(
    queue: tf.Tensor,
    queue_ids: tf.Tensor,
    filled: tf.Tensor | int,
    keys: tf.Tensor,
    ids: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """FIFO push of a batch of keys, newest first.

    Entry ``p`` of the result is the ``p``-th newest key of the whole stream: the batch
    goes in front in reverse order (``keys[B - 1]`` at position 0), the oldest entries
    fall off the end, and for ``B > Q`` only the batch's last ``Q`` keys are kept. Keys
    are stored as given (under ``tf.stop_gradient``); pass L2-normalised ones.

    Args:
        queue: ``[Q, D]`` current entries.
        queue_ids: ``[Q]`` their video ids.
        filled: Scalar int, how many entries are filled.
        keys: ``[B, D]`` new keys.
        ids: ``[B]`` their video ids.

    Returns:
        ``(queue [Q, D], queue_ids [Q], filled)`` with ``filled = min(filled + B, Q)``.
    """
    size = queue.shape[0] if queue.shape[0] is not None else tf.shape(queue)[0]
    keys = tf.stop_gradient(tf.cast(keys, queue.dtype))
    new_queue = tf.concat([tf.reverse(keys, axis=[0]), queue], axis=0)[:size]
    new_ids = tf.concat([tf.reverse(tf.cast(ids, queue_ids.dtype), axis=[0]), queue_ids], 0)
    filled = tf.convert_to_tensor(filled)
    batch = tf.cast(tf.shape(keys)[0], filled.dtype)
    new_filled = tf.minimum(filled + batch, tf.cast(size, filled.dtype))
    return new_queue, new_ids[:size], new_filled
