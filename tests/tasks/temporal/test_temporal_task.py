"""The temporal task end to end on the tiny set: heads, contrastive queue, state hook."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import SPEC, tiny_audio_tower, tiny_video_tower

from avts_tf.data import pipeline
from avts_tf.models import AVTSModel
from avts_tf.tasks.temporal.task import TemporalContrastive
from avts_tf.tasks.temporal.views import ViewSpec

METRICS = {
    "speed_accuracy_video",
    "speed_accuracy_audio",
    "direction_accuracy_video",
    "direction_accuracy_audio",
    "order_accuracy_video",
    "order_accuracy_audio",
    "order_accuracy_cross",
    "contrastive_loss",
}


def _task(queue_size=8):
    return TemporalContrastive(
        view_spec=ViewSpec(speeds=(1, 2)), projection_dim=8, hidden_units=8, queue_size=queue_size
    )


def test_trains_fills_the_queue_and_evaluates(tiny_prepared):
    keras.utils.set_random_seed(0)
    task = _task(queue_size=8)
    model = AVTSModel(tiny_video_tower(), tiny_audio_tower(), task)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    data = pipeline.train_dataset(tiny_prepared, 2, task=task, spec=SPEC, seed=1)
    history = model.fit(data, steps_per_epoch=5, epochs=1, verbose=0).history
    assert METRICS <= set(history)
    assert np.isfinite(history["loss"][0])
    queue, ids, filled = (v.numpy() for v in task.queues["video"])
    assert int(filled) == 8  # 5 steps of 2 examples, capped at the queue's 8
    assert np.allclose(np.linalg.norm(queue, axis=1), 1.0, atol=1e-5)  # unit keys
    assert len(set(ids.tolist()) - {0}) >= 2
    results = model.evaluate(
        pipeline.eval_dataset(tiny_prepared, 2, task=task, spec=SPEC, clips_per_video=2),
        return_dict=True,
        verbose=0,
    )
    assert METRICS <= set(results)
    test = pipeline.eval_dataset(tiny_prepared, 2, task=task, spec=SPEC, clips_per_video=2)
    views = task.embed_views(model, test)
    best = np.argmax(views["video"] @ views["audio"].T, axis=1)  # Each video view's top audio.
    expected = np.mean(views["video_id"][best] == views["video_id"])
    assert task.retrieval_r1(model, test) == pytest.approx(expected)
    assert np.isnan(task.retrieval_r1(model, test.take(0)))  # No view: undefined, no crash.
    assert task.dataset_metrics(model, test) == {"retrieval_r1_v2a": pytest.approx(expected)}
    # One held-out video: no anchor has a negative, so its InfoNCE (0) is undefined, not a
    # value.
    first = views["video_id"][0]
    one = test.unbatch().filter(lambda example: example["video_id"] == first).batch(2)
    undefined = task.dataset_metrics(model, one)
    assert set(undefined) == {"retrieval_r1_v2a", "contrastive_loss"}
    assert np.isnan(undefined["contrastive_loss"])


def _numpy_order(start_i, span_i, start_j, span_j):
    return np.where(start_i + span_i <= start_j, 1, np.where(start_j + span_j <= start_i, 2, 0))


ORDERS = ("'overlap'", "'i_before_j'", "'j_before_i'")


def test_held_out_views_of_one_class_are_told(tiny_prepared):
    """On records too short for slower views or for views apart, every held-out speed or
    ordering label is one class: those accuracies are flagged, not reported as measures."""
    keras.utils.set_random_seed(0)
    task = TemporalContrastive(
        view_spec=ViewSpec(num_views=3, speeds=(1, 2)),
        projection_dim=8,
        hidden_units=8,
        queue_size=8,
    )
    model = AVTSModel(tiny_video_tower(), tiny_audio_tower(), task)
    test = pipeline.eval_dataset(tiny_prepared, 4, task=task, spec=SPEC, clips_per_video=2)
    embedded = task.embed_views(model, test)
    batches = list(test.as_numpy_iterator())
    speeds = np.concatenate([b["speed"].reshape(-1) for b in batches])
    np.testing.assert_array_equal(embedded["speed"], speeds)
    expected_order = np.concatenate(
        [
            np.stack(
                [
                    _numpy_order(
                        b["view_start"][:, i],
                        b["view_span"][:, i],
                        b["view_start"][:, j],
                        b["view_span"][:, j],
                    )
                    for i, j in ((0, 1), (0, 2), (1, 2))
                ],
                axis=1,
            ).reshape(-1)
            for b in batches
        ]
    )
    np.testing.assert_array_equal(embedded["order"], expected_order)
    assert set(speeds) == {0, 1} and set(expected_order) == {0, 1, 2}
    # Few held-out views (2 records x 2 clips x 3 views) and, with 3 views, the pairs
    # (1, 2) that nothing balances: a class dominating its head's labels is told with the
    # score a head answering it alone gets (chance is not 1/3 when the shares differ).
    speed_share = np.bincount(speeds, minlength=2) / len(speeds)
    pair_share = np.bincount(expected_order, minlength=3) / len(expected_order)
    cross = expected_order.reshape(-1, 3)[:, :2]  # pairs (0, 1) and (0, 2)
    cross_share = np.bincount(cross.reshape(-1), minlength=3) / cross.size
    assert max(speed_share) > 0.55 and max(pair_share) > 0.39 and max(cross_share) > 0.39
    expected = []
    for share, what, answers, metrics, chance in (
        (
            speed_share,
            "of the held-out views are at speed {}",
            ("1x", "2x"),
            "speed_accuracy_video and speed_accuracy_audio",
            0.5,
        ),
        (
            pair_share,
            "of the held-out pairs of views are {}",
            ORDERS,
            "order_accuracy_video and order_accuracy_audio",
            1 / 3,
        ),
        (
            cross_share,
            "of the held-out pairs of video view 0 and an audio view are {}",
            ORDERS,
            "order_accuracy_cross",
            1 / 3,
        ),
    ):
        top = int(np.argmax(share))
        expected.append(
            f"{share[top]:.0%} {what.format(answers[top])}: a head answering {answers[top]} "
            f"alone scores {share[top]:.3f} on {metrics}; compare them with that, not with "
            f"{chance:.3f}"
        )
    assert task.held_out_caveats(embedded) == expected
    # Two views and 6 examples a record, as the recipe: every class equally often, no caveat.
    two = TemporalContrastive(
        view_spec=ViewSpec(num_views=2, speeds=(1, 2)),
        projection_dim=8,
        hidden_units=8,
        queue_size=8,
    )
    balanced = two.embed_views(
        AVTSModel(tiny_video_tower(), tiny_audio_tower(), two),
        pipeline.eval_dataset(tiny_prepared, 4, task=two, spec=SPEC, clips_per_video=6),
    )
    assert np.bincount(balanced["speed"]).tolist() == [12, 12]
    assert np.bincount(balanced["order"]).tolist() == [4, 4, 4]
    assert two.held_out_caveats(balanced) == []
    # 2 s clips on the 3 s records: no 2x view fits and no two views fit apart.
    long_clip = dataclasses.replace(SPEC, num_frames=16)
    short = pipeline.eval_dataset(tiny_prepared, 4, task=task, spec=long_clip, clips_per_video=2)
    model = AVTSModel(
        tiny_video_tower(input_shape=long_clip.video_shape()),
        tiny_audio_tower(input_shape=long_clip.audio_shape(8.0)),
        task,
    )
    assert task.held_out_caveats(task.embed_views(model, short)) == [
        "every held-out view is at speed 1x (no held-out record holds a view at another of "
        "the speeds (1, 2)): speed_accuracy_video and speed_accuracy_audio say nothing of the "
        "towers; evaluate on longer videos",
        "every held-out pair of views is 'overlap' (the held-out records are too short for "
        "views apart): order_accuracy_video, order_accuracy_audio and order_accuracy_cross "
        "say nothing of the towers; evaluate on longer videos",
    ]


def test_config_round_trip():
    task = TemporalContrastive(
        view_spec=ViewSpec(speeds=(1, 2), color_jitter=0.4),
        projection_dim=8,
        hidden_units=8,
        queue_size=8,
    )
    rebuilt = TemporalContrastive.from_config(task.get_config())
    assert rebuilt.view_spec == task.view_spec
    assert rebuilt.get_config() == task.get_config()


def _label_batch(size=6, k=2):
    rng = np.random.default_rng(5)
    return {
        "audio": tf.constant(rng.random((size, k, 3)), tf.float32),
        "speed": tf.constant(rng.integers(0, 3, (size, k)), tf.int32),
        "backward": tf.constant(rng.integers(0, 2, (size, k)), tf.int32),
        "view_start": tf.constant(rng.integers(0, 9, (size, k)) * 100, tf.int64),
        "view_span": tf.constant(rng.integers(1, 4, (size, k)) * 100, tf.int64),
    }


def test_permuted_labels_control_permutes_rows_together():
    batch = _label_batch()
    task = TemporalContrastive(control="permuted_labels")
    labels, audio_labels, audio = task._controlled(batch, batch["audio"], batch["audio"], 7)
    shift = int(tf.random.stateless_uniform([], tf.constant([7, 20230207]), 0, 3, dtype=tf.int32))
    order = np.array([3 + (i + shift) % 3 for i in range(3)] + [(i + shift) % 3 for i in range(3)])
    for key in ("speed", "backward", "view_start", "view_span"):
        np.testing.assert_array_equal(labels[key].numpy(), batch[key].numpy()[order])
        np.testing.assert_array_equal(audio_labels[key].numpy(), labels[key].numpy())
    np.testing.assert_array_equal(audio.numpy(), batch["audio"].numpy())  # inputs untouched
    others = [task._controlled(batch, batch["audio"], batch["audio"], s)[0] for s in range(8, 14)]
    assert any((o["speed"].numpy() != labels["speed"].numpy()).any() for o in others)


def test_label_control_takes_labels_from_the_other_half():
    """Row i takes a row of the other half (no fixed point), every shift drawn."""
    from avts_tf.tasks.temporal.task import derangement

    for size in (2, 6, 8):
        half, firsts = size // 2, []
        for step in range(200):
            order = derangement(step, size).numpy()
            assert sorted(order.tolist()) == list(range(size))
            assert np.all((order < half) != (np.arange(size) < half)), (size, step, order)
            assert np.all((order - np.arange(size)) % half == order[0] - half)  # one shift
            firsts.append(int(order[0]))
        assert sorted(set(firsts)) == list(range(half, size))


@pytest.mark.parametrize("control", ["permuted_labels", "unrelated_audio", "none"])
def test_mixing_controls_keep_batchnorm_statistics_within_each_view_of_each_half(control):
    """Under a control that pairs the halves, the training features of view 0 of half A
    depend neither on half B's inputs nor on the other views (BatchNorm sees each view
    of each half alone); without one they do."""
    tower = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization()]
    )
    task = TemporalContrastive(control=control)
    clips = np.random.default_rng(0).random((8, 2, 3)).astype("float32")
    changed = clips.copy()
    changed[4:] += 5.0  # half B
    changed[:4, 1] -= 3.0  # view 1 of half A
    a, b = (
        task.embed_clips(tower, tf.constant(x), training=True).numpy()[:4, 0]
        for x in (clips, changed)
    )
    if control == "none":
        assert np.abs(a - b).max() > 0.1
    else:
        np.testing.assert_allclose(a, b, atol=1e-6)
        # Each group is the tower on its own (training-mode statistics of 4 clips).
        expected = tower(clips[4:, 1], training=True).numpy()
        np.testing.assert_allclose(
            task.embed_clips(tower, tf.constant(clips), True).numpy()[4:, 1], expected, atol=1e-6
        )
    # Evaluation: the moving statistics, whatever the control.
    full = task.embed_clips(tower, tf.constant(clips), training=False).numpy()
    np.testing.assert_allclose(
        full, tower(clips.reshape(16, 3), training=False).numpy().reshape(8, 2, 4), atol=1e-6
    )


def test_unrelated_audio_control_rolls_audio_with_its_own_labels():
    batch = _label_batch()
    task = TemporalContrastive(control="unrelated_audio")
    labels, audio_labels, audio = task._controlled(batch, batch["audio"], batch["audio"], 7)
    np.testing.assert_array_equal(audio.numpy(), np.roll(batch["audio"].numpy(), 3, axis=0))
    for key in ("speed", "backward", "view_start", "view_span"):
        # Audio heads keep the labels of the audio they see; the video side keeps its own,
        # so a video view and the audio it is paired with come from different videos.
        np.testing.assert_array_equal(
            audio_labels[key].numpy(), np.roll(batch[key].numpy(), 3, axis=0)
        )
        np.testing.assert_array_equal(labels[key].numpy(), batch[key].numpy())


def test_no_control_and_shuffled_frames_leave_labels_alone(tiny_prepared):
    batch = _label_batch()
    for control in ("none", "shuffled_frames"):
        labels, audio_labels, audio = TemporalContrastive(control=control)._controlled(
            batch, batch["audio"], batch["audio"], 7
        )
        assert labels is audio_labels and audio is batch["audio"]
        for key in labels:
            np.testing.assert_array_equal(labels[key].numpy(), batch[key].numpy())
    # shuffled_frames acts in the example function: the views' frames in random order.
    from avts_tf.data.clips import Clips
    from avts_tf.data.manifest import Manifest
    from avts_tf.data.pipeline import _records, shard_files
    from avts_tf.tasks.temporal.views import cut_views

    clips = Clips(SPEC, Manifest.read(tiny_prepared).fps)
    record = next(iter(_records(shard_files(tiny_prepared, "train"), False, None)))
    seed = tf.constant([3, 4])
    task = TemporalContrastive(view_spec=ViewSpec(speeds=(1, 2)), control="shuffled_frames")
    got = task.train_example(clips, record, seed)
    want = cut_views(clips, record, seed, task.view_spec, True, shuffle_frames=True)
    plain = cut_views(clips, record, seed, task.view_spec, True)
    np.testing.assert_array_equal(got["video"].numpy(), want["video"].numpy())
    assert not np.array_equal(got["video"].numpy(), plain["video"].numpy())
    np.testing.assert_array_equal(
        np.sort(got["audio"].numpy(), axis=1), np.sort(plain["audio"].numpy(), axis=1)
    )


def test_unknown_control_names_the_valid_ones():
    with pytest.raises(ValueError, match="permuted_labels, shuffled_frames, unrelated_audio"):
        TemporalContrastive(control="shuffle")


def test_recall_at_1_equals_brute_force():
    from avts_tf.tasks.temporal.task import recall_at_1

    rng = np.random.default_rng(0)
    queries, gallery = rng.normal(size=(50, 4)), rng.normal(size=(40, 4))
    query_ids, gallery_ids = rng.integers(0, 6, 50), rng.integers(0, 6, 40)
    expected = np.mean(
        [
            gallery_ids[np.argmax([q @ g for g in gallery])] == i
            for q, i in zip(queries, query_ids, strict=True)
        ]
    )
    for chunk in (7, 1024):
        assert recall_at_1(queries, gallery, query_ids, gallery_ids, chunk) == expected
    # Identical embeddings per video: every query finds its own video.
    ids = np.repeat(np.arange(5), 3)
    assert recall_at_1(np.eye(5)[ids], np.eye(5)[ids], ids, ids) == 1.0
    # One held-out video: every query would hit; undefined, so evaluation leaves it out.
    one = np.zeros(4, np.int64)
    assert np.isnan(recall_at_1(queries[:4], gallery[:4], one, one))


def _np_info_nce(anchors: np.ndarray, keys: np.ndarray, temperature: float) -> np.ndarray:
    """Per-anchor InfoNCE, row i's positive is key i (no queue, distinct videos)."""
    anchors = anchors / np.linalg.norm(anchors, axis=1, keepdims=True)
    keys = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    logits = anchors @ keys.T / temperature
    logits -= logits.max(axis=1, keepdims=True)
    return -np.diag(logits) + np.log(np.exp(logits).sum(axis=1))


@pytest.mark.parametrize("weight", [0.0, 0.25, 1.0])
def test_video_video_weight_scales_only_the_video_video_pairs(weight):
    """contrastive = w (vv0->1 + vv1->0) + v0->a + a->v0, each against a NumPy InfoNCE."""
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(0)
    size, k = 4, 2
    task = TemporalContrastive(
        view_spec=ViewSpec(speeds=(1, 2, 4)),
        projection_dim=8,
        hidden_units=8,
        queue_size=8,
        video_video_weight=weight,
        loss_weights={"speed": 0, "direction": 0, "order": 0},
    )
    model = AVTSModel(tiny_video_tower(), tiny_audio_tower(), task)
    batch = {
        "video": tf.constant(
            rng.random((size, k, SPEC.num_frames, SPEC.crop_size, SPEC.crop_size, 3)), tf.float32
        ),
        "audio": tf.constant(rng.random((size, k, *model.audio_tower.input_shape[1:])), tf.float32),
        **{key: value for key, value in _label_batch(size, k).items() if key != "audio"},
        "video_id": tf.constant([11, 12, 13, 14], tf.int64),
    }
    loss, _, _ = task.compute(model, batch, training=False, step=0)
    video = task.embed_clips(model.video_tower, batch["video"], False).numpy()
    audio = task.embed_clips(model.audio_tower, batch["audio"], False).numpy()
    zv0, zv1 = (task.heads["project_video"](video[:, i]).numpy() for i in range(2))
    za = task.heads["project_audio"](audio[:, 0]).numpy()
    t = task.temperature
    expected = (
        weight * (_np_info_nce(zv0, zv1, t) + _np_info_nce(zv1, zv0, t))
        + _np_info_nce(zv0, za, t)
        + _np_info_nce(za, zv0, t)
    )
    np.testing.assert_allclose(float(loss), expected.sum() / size, rtol=1e-5)
    assert TemporalContrastive.from_config(task.get_config()).video_video_weight == weight
    with pytest.raises(ValueError, match="video_video_weight must be a number >= 0"):
        TemporalContrastive(video_video_weight=-1)
