"""Exact checks of the TSSL contrastive loss, its queue neighbours and the FIFO queue."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from avts_tf.tasks.temporal import contrastive

TAU = 0.1


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_nearest(query: np.ndarray, queue: np.ndarray, eligible: np.ndarray) -> int | None:
    """Brute force: index of the largest dot product among eligible entries."""
    best, best_score = None, -np.inf
    for index in range(len(queue)):
        score = float(query @ queue[index])
        if eligible[index] and score > best_score:
            best, best_score = index, score
    return best


def _np_loss(anchors, keys, ids, queue, queue_ids, queue_full, extra_pos=True, extra_neg=True):
    """Reference: returns (loss [B], extra positive index [B], extra negative index [B, B])."""
    a, k, q = _normalize(anchors), _normalize(keys), _normalize(queue)
    batch = len(a)
    losses = np.zeros(batch)
    pos_index = np.full(batch, -1)
    neg_index = np.full((batch, batch), -1)
    for i in range(batch):
        other = queue_ids != ids[i]
        positives = [k[i]]
        negatives = [k[j] for j in range(batch) if ids[j] != ids[i]]
        pos_index[i] = _np_nearest(k[i], q, other)
        for j in range(batch):  # all pairs, so the lookup is checked where it matters most
            neg_index[i, j] = _np_nearest(k[j], q, other)
        if queue_full and extra_pos:
            positives.append(q[pos_index[i]])
        if queue_full and extra_neg:
            negatives += [q[neg_index[i, j]] for j in range(batch) if ids[j] != ids[i]]
        neg = np.array([np.exp(a[i] @ n / TAU) for n in negatives]).sum()
        terms = []
        for p in positives:
            e = np.exp(a[i] @ p / TAU)
            terms.append(-np.log(e / (e + neg)))
        losses[i] = np.mean(terms)
    return losses, pos_index, neg_index


def _planted(seed: int = 0):
    """Batch of 8 with two same-video pairs; queue of 20 holding each anchor's own key."""
    rng = np.random.default_rng(seed)
    batch, dim, size = 8, 6, 20
    ids = np.array([0, 0, 1, 1, 2, 3, 4, 5])
    anchors = rng.normal(size=(batch, dim))
    keys = anchors + 0.5 * rng.normal(size=(batch, dim))
    queue = _normalize(rng.normal(size=(size, dim)))
    queue_ids = rng.integers(0, 12, size=size)
    # Plant each example's own key (with its video id) in the queue: the unmasked
    # nearest neighbour of k[i] would be it.
    planted = np.arange(batch) * 2 + 1
    queue[planted] = _normalize(keys)
    queue_ids[planted] = ids
    return anchors, keys, ids, queue, queue_ids, planted


def _tf_loss(anchors, keys, ids, queue, queue_ids, full, **kwargs):
    return contrastive.info_nce_with_queue(
        tf.constant(anchors, tf.float32),
        tf.constant(keys, tf.float32),
        tf.constant(ids),
        tf.constant(queue, tf.float32),
        tf.constant(queue_ids),
        tf.constant(full),
        temperature=TAU,
        **kwargs,
    ).numpy()


@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize("extra_pos,extra_neg", [(True, True), (True, False), (False, True)])
def test_loss_equals_numpy_with_planted_queue(full, extra_pos, extra_neg):
    anchors, keys, ids, queue, queue_ids, planted = _planted()
    expected, pos_index, neg_index = _np_loss(
        anchors, keys, ids, queue, queue_ids, full, extra_pos, extra_neg
    )
    got = _tf_loss(
        anchors,
        keys,
        ids,
        queue,
        queue_ids,
        full,
        extra_positives=extra_pos,
        extra_negatives=extra_neg,
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

    # Neighbour indices: TF's O(BQ) lookups equal the brute-force masked argmax.
    k = tf.constant(_normalize(keys), tf.float32)
    q = tf.constant(queue, tf.float32)
    valid = tf.ones([len(queue)], tf.bool)
    got_pos = contrastive.nearest(k, q, tf.constant(ids), tf.constant(queue_ids), valid).numpy()
    np.testing.assert_array_equal(got_pos, pos_index)
    assert not np.any(got_pos == planted)  # no example's own key is its neighbour
    assert not np.any(queue_ids[got_pos] == ids)  # nor any entry of its video
    got_neg, found = contrastive._negative_neighbours(
        k, q, tf.constant(queue_ids), tf.constant(ids)
    )
    assert np.all(found.numpy())
    np.testing.assert_array_equal(got_neg.numpy(), neg_index)
    # Including pairs whose key's overall nearest entry is of the anchor's video (the
    # planted key of a same-video example), where the second-best video must be used.
    assert np.any(queue_ids[np.argmax(_normalize(keys) @ queue.T, axis=1)][None, :] == ids[:, None])
    # Extra negatives of anchor i never come from anchor i's video.
    assert not np.any(queue_ids[got_neg.numpy()] == ids[:, None])


@pytest.mark.parametrize("offset,count", [(0, 4), (4, 4), (2, 3)])
def test_anchor_share_with_offset_equals_those_rows(offset, count):
    # A replica's anchors against the whole step's keys: the rows of the one-device loss.
    anchors, keys, ids, queue, queue_ids, _ = _planted()
    expected, _, _ = _np_loss(anchors, keys, ids, queue, queue_ids, True)
    got = _tf_loss(
        anchors[offset : offset + count], keys, ids, queue, queue_ids, True, offset=offset
    )
    np.testing.assert_allclose(got, expected[offset : offset + count], rtol=1e-5, atol=1e-5)


def test_queue_extras_change_the_loss_only_when_full():
    anchors, keys, ids, queue, queue_ids, _ = _planted(1)
    full = _tf_loss(anchors, keys, ids, queue, queue_ids, True)
    empty = _tf_loss(anchors, keys, ids, queue, queue_ids, False)
    assert np.all(np.abs(full - empty) > 1e-4)
    # Not full: exactly in-batch InfoNCE with same-video keys masked, whatever the queue holds.
    np.testing.assert_allclose(
        empty, _tf_loss(anchors, keys, ids, 0 * queue + 1.0, queue_ids, False), rtol=1e-6
    )


def test_own_key_planted_in_queue_is_never_its_neighbour():
    """Entries of the anchor's video are masked: deleting them leaves its loss unchanged."""
    anchors, keys, ids, queue, queue_ids, planted = _planted(2)
    k = tf.constant(_normalize(keys), tf.float32)
    index = contrastive.nearest(
        k,
        tf.constant(queue, tf.float32),
        tf.constant(ids),
        tf.constant(queue_ids),
        tf.ones([len(queue)], tf.bool),
    ).numpy()
    assert not np.any(index == planted)
    # Unmasked, the planted own key would be the neighbour (dot product 1).
    assert np.all(np.argmax(_normalize(keys) @ queue.T, axis=1) == planted)
    full = _tf_loss(anchors, keys, ids, queue, queue_ids, True, extra_negatives=False)
    for i in range(len(ids)):
        keep = queue_ids != ids[i]
        alone = _tf_loss(
            anchors, keys, ids, queue[keep], queue_ids[keep], True, extra_negatives=False
        )
        np.testing.assert_allclose(full[i], alone[i], rtol=1e-6)


def test_nearest_masks_video_and_invalid_entries():
    queue = tf.constant([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
    queue_ids = tf.constant([7, 1, 2, 3])
    queries = tf.constant([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    query_ids = tf.constant([7, 3, 5])
    valid = tf.constant([True, True, True, True])
    # Query 0 is of video 7 (entry 0 masked): next best entry 3; query 1 of video 3: entry 0.
    np.testing.assert_array_equal(
        contrastive.nearest(queries, queue, query_ids, queue_ids, valid).numpy(), [3, 0, 0]
    )
    valid = tf.constant([False, True, True, True])
    np.testing.assert_array_equal(
        contrastive.nearest(queries, queue, query_ids, queue_ids, valid).numpy(), [3, 2, 3]
    )


def test_masking_passes_check_numerics():
    """``tf.debugging.enable_check_numerics`` (finding a NaN) must not stop at the mask."""
    tf.debugging.enable_check_numerics()
    try:
        index = contrastive.nearest(
            tf.constant([[1.0, 0.0]]),
            tf.constant([[1.0, 0.0]] * 2),
            tf.constant([7]),
            tf.constant([7, 8]),
            tf.constant([True, True]),
        )
    finally:
        tf.debugging.disable_check_numerics()
    assert index.numpy().tolist() == [1]


def test_no_gradient_into_queue():
    anchors, keys, ids, queue, queue_ids, _ = _planted(3)
    a = tf.Variable(anchors, dtype=tf.float32)
    k = tf.Variable(keys, dtype=tf.float32)
    q = tf.Variable(queue, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(contrastive.info_nce_with_queue(a, k, ids, q, queue_ids, True))
    grad_a, grad_k, grad_q = tape.gradient(loss, [a, k, q])
    assert grad_q is None or not np.any(grad_q.numpy())
    assert np.all(np.isfinite(grad_a.numpy())) and np.any(grad_a.numpy())
    assert np.all(np.isfinite(grad_k.numpy())) and np.any(grad_k.numpy())


def _stream(steps: int, batch: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    keys = rng.normal(size=(steps, batch, dim)).astype(np.float32)
    ids = np.arange(steps * batch).reshape(steps, batch) + 100
    return keys, ids


@pytest.mark.parametrize("size,batch,steps", [(7, 3, 5), (6, 3, 4), (7, 3, 1), (5, 8, 3)])
def test_queue_holds_last_q_keys_newest_first(size, batch, steps):
    dim = 4
    keys, ids = _stream(steps, batch, dim, seed=size + batch)
    queue = tf.zeros([size, dim])
    queue_ids = tf.fill([size], -1)
    filled = tf.constant(0)
    for step in range(steps):
        queue, queue_ids, filled = contrastive.enqueue(
            queue, queue_ids, filled, tf.constant(keys[step]), tf.constant(ids[step])
        )
    flat_keys, flat_ids = keys.reshape(-1, dim), ids.reshape(-1)
    kept = min(size, steps * batch)
    assert int(filled) == kept
    # Entry p is the p-th newest key of the stream.
    np.testing.assert_array_equal(queue.numpy()[:kept], flat_keys[::-1][:kept])
    np.testing.assert_array_equal(queue_ids.numpy()[:kept], flat_ids[::-1][:kept])
    np.testing.assert_array_equal(queue.numpy()[kept:], 0.0)
    np.testing.assert_array_equal(queue_ids.numpy()[kept:], -1)


def test_jit_compile_matches_eager():
    anchors, keys, ids, queue, queue_ids, _ = _planted(4)

    @tf.function(jit_compile=True)
    def step(a, k, i, q, qi, filled):
        size = tf.shape(q)[0]
        loss = contrastive.info_nce_with_queue(a, k, i, q, qi, filled >= size, temperature=TAU)
        return (loss,) + contrastive.enqueue(q, qi, filled, tf.math.l2_normalize(k, -1), i)

    args = [tf.constant(x, tf.float32) for x in (anchors, keys)] + [tf.constant(ids)]
    args += [tf.constant(queue, tf.float32), tf.constant(queue_ids)]
    for filled, full in ((len(queue), True), (3, False)):
        loss, new_q, new_ids, new_filled = step(*args, tf.constant(filled))
        expected, _, _ = _np_loss(anchors, keys, ids, queue, queue_ids, full)
        np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5, atol=1e-5)
        assert int(new_filled) == min(filled + len(ids), len(queue))
        np.testing.assert_allclose(new_q.numpy()[: len(ids)], _normalize(keys)[::-1], atol=1e-6)
        np.testing.assert_array_equal(new_ids.numpy()[: len(ids)], ids[::-1])
        np.testing.assert_array_equal(new_ids.numpy()[len(ids) :], queue_ids[: -len(ids)])
