"""Temporal views (speed, direction, start) and ordering labels, with exact expectations."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf
import tiny

from avts_tf.data.audio_features import LogMelSpec
from avts_tf.data.clips import Clips, ClipSpec
from avts_tf.tasks.base import Task
from avts_tf.tasks.temporal.ordering import ORDER_CLASSES, order_labels
from avts_tf.tasks.temporal.views import ViewSpec, cut_views, draw_views, place_views

FPS = 8.0
RATE = 16000
LEVEL = 6  # Gray level step between frames: frame i is gray i * LEVEL (survives JPEG).
LOG_MEL = LogMelSpec(mel_bins=16, window_s=0.04, hop_s=0.02)


def make_clips(stride: int = 1) -> Clips:
    return Clips(ClipSpec(num_frames=4, frame_stride=stride, crop_size=16, log_mel=LOG_MEL), FPS)


def make_record(num_frames: int, record_id: str = "video-a") -> dict[str, tf.Tensor]:
    """A parsed-record dict whose frame i is a uniform JPEG of gray level i * LEVEL."""
    jpegs = [
        tf.io.encode_jpeg(tf.fill([20, 24, 3], tf.constant(i * LEVEL, tf.uint8)))
        for i in range(num_frames)
    ]
    samples = int(num_frames * RATE / FPS)
    wave = np.random.default_rng(num_frames).uniform(-0.5, 0.5, samples).astype(np.float32)
    return {
        "frames": tf.stack(jpegs),
        "waveform": tf.constant(wave),
        "num_frames": tf.constant(num_frames, tf.int64),
        "num_samples": tf.constant(samples, tf.int64),
        "id": tf.constant(record_id),
        "label_index": tf.constant(-1, tf.int64),
    }


def frame_levels(video: np.ndarray) -> np.ndarray:
    """Gray level index of each decoded frame, ``[K, T]``."""
    return np.round(video.mean(axis=(2, 3, 4)) * 255.0 / LEVEL).astype(np.int64)


def numpy_log_mel(wave: np.ndarray, hop: int) -> np.ndarray:
    """Log-mel with LOG_MEL's window and ``hop``, in NumPy (mel matrix from tf.signal)."""
    window, fft = LOG_MEL.window_samples, LOG_MEL.fft_length
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)  # periodic
    count = 1 + (len(wave) - window) // hop
    frames = np.stack([wave[i * hop : i * hop + window] for i in range(count)]).astype(np.float64)
    power = np.abs(np.fft.rfft(frames * hann, n=fft)) ** 2
    mel_matrix = (
        tf.signal.linear_to_mel_weight_matrix(
            LOG_MEL.mel_bins, fft // 2 + 1, RATE, LOG_MEL.lower_hz, RATE / 2
        )
        .numpy()
        .astype(np.float64)
    )
    return np.log(power @ mel_matrix + LOG_MEL.log_offset)[..., None]


def draws(clips, record, spec, count, training=True, num_clips=1):
    """``draw_views`` for seeds (or clip indices) 0..count-1, as NumPy arrays."""

    def one(i):
        seed = tf.stack([tf.cast(i, tf.int32), tf.constant(7, tf.int32)])
        return draw_views(clips, record, seed, spec, training, i, num_clips)

    dataset = tf.data.Dataset.range(count).map(one).batch(count)
    return {key: value.numpy() for key, value in next(iter(dataset)).items()}


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_frames_follow_speed_and_direction(stride, training):
    clips, record = make_clips(stride), make_record(40)
    spec = ViewSpec(num_views=3)
    seen = set()
    for i in range(8):
        out = cut_views(clips, record, tf.constant([i, 1]), spec, training, i, 8)
        levels = frame_levels(out["video"].numpy())
        for k in range(3):
            s = spec.speeds[out["speed"][k]]
            start = int(out["view_start"][k]) * FPS / RATE
            assert start == int(start)
            expected = int(start) + stride * s * np.arange(4)
            if out["backward"][k]:
                expected = expected[::-1]
            np.testing.assert_array_equal(levels[k], expected)
            assert int(out["view_span"][k]) == s * 4 * stride * RATE / FPS
            seen.add((s, int(out["backward"][k])))
    assert len(seen) >= 4  # Several speeds and both directions were exercised.


def test_unholdable_speed_never_drawn():
    # 10 frames (1.25 s): speeds 1 (4 frames) and 2 (8) fit, 4 (16) does not.
    clips, record = make_clips(), make_record(10)
    out = draws(clips, record, ViewSpec(), 1000)
    assert set(np.unique(out["speed"])) == {0, 1}
    assert (out["view_start"] + out["view_span"] <= 20000).all()
    assert (out["start_frame"] + 4 * np.array([1, 2])[out["speed"]] <= 10).all()
    evaluation = draws(clips, record, ViewSpec(), 50, training=False, num_clips=50)
    assert set(np.unique(evaluation["speed"])) == {0, 1}


@pytest.mark.parametrize("audio_speed", ["hop", "resample"])
def test_audio_is_log_mel_of_the_window(audio_speed):
    clips, record = make_clips(), make_record(40)
    wave = record["waveform"].numpy()
    spec = ViewSpec(num_views=4, audio_speed=audio_speed)
    hop, window, frames = LOG_MEL.hop_samples, 8000, 24
    seen = set()
    for i in range(6):
        out = cut_views(clips, record, tf.constant([i, 3]), spec, True)
        for k in range(4):
            s = spec.speeds[out["speed"][k]]
            start, span = int(out["view_start"][k]), int(out["view_span"][k])
            assert span == s * window
            samples = wave[start : start + span]
            if audio_speed == "hop":
                expected = numpy_log_mel(samples, s * hop)[:frames]
            else:
                expected = numpy_log_mel(samples.reshape(window, s).mean(axis=1), hop)
            if out["backward"][k]:
                expected = expected[::-1]
            np.testing.assert_allclose(out["audio"][k].numpy(), expected, rtol=1e-5, atol=1e-5)
            seen.add((s, int(out["backward"][k])))
    assert len(seen) >= 4


def test_order_labels_table():
    # (start_i, span_i, start_j, span_j, label)
    table = [
        (0, 10, 20, 10, 1),  # i well before j
        (0, 10, 10, 10, 1),  # touching: end_i == start_j
        (10, 10, 0, 10, 2),  # touching: end_j == start_i
        (30, 5, 0, 10, 2),
        (0, 10, 9, 10, 0),  # one sample in common
        (9, 10, 0, 10, 0),
        (0, 40, 10, 5, 0),  # j inside i
        (10, 5, 0, 40, 0),  # i inside j
        (5, 10, 5, 10, 0),  # identical
        (0, 8000, 16000, 32000, 1),
    ]
    columns = np.array(table, np.int64).T
    labels = order_labels(*(tf.constant(c) for c in columns[:4]))
    assert labels.dtype == tf.int32
    np.testing.assert_array_equal(labels.numpy(), columns[4])
    assert ORDER_CLASSES == ("overlap", "i_before_j", "j_before_i")
    # Broadcasting over a [K, K] grid of views.
    start, span = tf.constant([0, 10, 40], tf.int64), tf.constant([10, 30, 5], tf.int64)
    grid = order_labels(start[:, None], span[:, None], start[None, :], span[None, :])
    np.testing.assert_array_equal(grid.numpy(), [[0, 1, 1], [2, 0, 1], [2, 2, 0]])


@pytest.mark.parametrize("num_frames,backward_probability", [(40, 0.5), (10, 0.3)])
def test_class_shares_over_10k_draws(num_frames, backward_probability):
    clips, record = make_clips(), make_record(num_frames)
    spec = ViewSpec(backward_probability=backward_probability)
    out = draws(clips, record, spec, 10_000)
    holdable = 3 if num_frames == 40 else 2
    speed = out["speed"].ravel()
    for index in range(3):
        target = 1 / holdable if index < holdable else 0.0
        assert abs(np.mean(speed == index) - target) <= 0.03, (index, np.mean(speed == index))
    assert abs(np.mean(out["backward"]) - backward_probability) <= 0.03


@pytest.mark.parametrize("num_frames", [40, 10])
def test_evaluation_views_deterministic_and_balanced(num_frames):
    clips = make_clips()
    spec = ViewSpec(num_views=2)
    holdable = 3 if num_frames == 40 else 2
    num_clips = 3 * holdable  # 2c-view speed cycles and 3-example order cycles both close.
    for record_id in ("a", "b", "c"):
        record = make_record(num_frames, record_id)
        first = draws(clips, record, spec, num_clips, training=False, num_clips=num_clips)
        again = draws(clips, record, spec, num_clips, training=False, num_clips=num_clips)
        for key in first:
            np.testing.assert_array_equal(first[key], again[key])
        pairs = sorted(zip(first["speed"].ravel(), first["backward"].ravel(), strict=True))
        assert pairs == sorted(3 * [(s, d) for s in range(holdable) for d in (0, 1)])
        # Each example holds one forward and one backward view.
        assert (first["backward"].sum(axis=1) == 1).all()
        order = order_labels(
            *(first[key][:, i] for i in (0, 1) for key in ("view_start", "view_span"))
        ).numpy()
        counts = np.bincount(order, minlength=3)
        if num_frames == 40:  # Any two speeds fit side by side: each class in 1/3.
            np.testing.assert_array_equal(counts, [num_clips // 3] * 3)
        else:  # Only two 1x views fit side by side: the other pairs overlap.
            one_x = (first["speed"] == 0).all(axis=1)
            assert (order[~one_x] == 0).all()
    # The reader's seed (record and clip index) fixes everything: same seed, same tensors.
    record = make_record(num_frames)
    a = cut_views(clips, record, tf.constant([0, 1]), spec, False, 1, num_clips)
    b = cut_views(clips, record, tf.constant([0, 1]), spec, False, 1, num_clips)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_evaluation_order_classes_independent_of_speeds():
    """Over records, view 0's speed says nothing of its order class (a cue the held-out
    ordering accuracy must not contain)."""
    clips = make_clips()
    spec = ViewSpec(num_views=2)
    joint = np.zeros((3, 3), int)
    for record_id in range(30):
        record = make_record(40, f"video_{record_id}")
        out = draws(clips, record, spec, 3, training=False, num_clips=3)
        order = order_labels(
            *(out[key][:, i] for i in (0, 1) for key in ("view_start", "view_span"))
        ).numpy()
        np.add.at(joint, (out["speed"][:, 0], order), 1)
    assert joint.sum() == 90 and (joint > 0).all(), joint
    assert joint.max() <= 25, joint  # 10 expected per cell


@pytest.mark.parametrize("num_views", [2, 3])
def test_order_classes_over_10k_draws(num_views):
    # 40 frames: two views of any speed (at most 16 frames each) fit side by side.
    clips, record = make_clips(), make_record(40)
    out = draws(clips, record, ViewSpec(num_views=num_views), 10_000)
    start, span = out["view_start"], out["view_span"]
    for j in range(1, num_views):
        order = order_labels(start[:, 0], span[:, 0], start[:, j], span[:, j]).numpy()
        shares = np.bincount(order, minlength=3) / len(order)
        if j == 1:  # The first pair's classes are all feasible: 1/3 each.
            np.testing.assert_allclose(shares, 1 / 3, atol=0.03)
        else:  # Later views may find "before" or "after" taken: never empty classes.
            assert shares.min() > 0.15, shares
    # Every view is inside the record, audio included.
    assert (start >= 0).all() and (start + span <= 40 * 2000).all()
    frames = 4 * np.array([1, 2, 4])[out["speed"]]
    assert (out["start_frame"] >= 0).all() and (out["start_frame"] + frames <= 40).all()


@pytest.mark.parametrize("num_views", [2, 3])
def test_view_0_position_says_nothing_of_the_classes(num_views):
    """In a record long enough (48 frames >= L0 + 2 max Lj, spans 4, 8 and 16 frames),
    every class of every pair (0, j) is drawn 1/3 and view 0's start is independent of
    them: with two views, uniform over [L1, 48 - L0 - L1] in every class."""
    clips, record = make_clips(), make_record(48)
    out = draws(clips, record, ViewSpec(num_views=num_views), 10_000)
    start, span, speed = out["view_start"], out["view_span"], out["speed"]
    first, frames = out["start_frame"][:, 0], 4 * np.array([1, 2, 4])[speed]
    for j in range(1, num_views):
        order = order_labels(start[:, 0], span[:, 0], start[:, j], span[:, j]).numpy()
        np.testing.assert_allclose(np.bincount(order, minlength=3) / len(order), 1 / 3, atol=0.03)
        means = [first[order == c].mean() for c in range(3)]
        assert np.ptp(means) <= 0.6, means  # standard error of each about 0.1 frame
    if num_views == 2:
        for s0, s1 in np.ndindex(3, 3):
            stratum = (speed[:, 0] == s0) & (speed[:, 1] == s1)
            low, high = frames[stratum, 1][0], 48 - frames[stratum, 0][0] - frames[stratum, 1][0]
            for c in range(3):
                chosen = first[stratum & (order == c)]
                assert (chosen.min(), chosen.max()) == (low, high), (s0, s1, c)


def test_place_views_gives_the_chosen_class():
    # Lengths and latest starts of three views in a 30-frame record.
    lengths = tf.constant([8, 4, 16], tf.int64)
    last = 30 - lengths
    seen = set()
    for i in range(300):
        rng = np.random.default_rng(i)
        start, classes = place_views(
            lengths, last, tf.constant(rng.random(3)), tf.constant(rng.random(3))
        )
        start, classes = start.numpy(), classes.numpy()
        assert (start >= 0).all() and (start <= last.numpy()).all()
        labels = order_labels(start[0], 8, start, lengths.numpy()).numpy()
        np.testing.assert_array_equal(labels[1:], classes[1:])
        seen.update(classes[1:].tolist())
    assert seen == {0, 1, 2}
    # A wanted class that does not fit (16 + 8 > 20 frames) falls back to "overlap".
    start, classes = place_views(
        tf.constant([8, 16], tf.int64),
        tf.constant([12, 4], tf.int64),
        tf.constant([0.0, 0.0], tf.float64),
        tf.constant([0.5, 0.5], tf.float64),
        tf.constant([0, 1]),
    )
    assert classes.numpy().tolist() == [0, 0]


def test_shuffled_frames_control_permutes_each_view():
    clips, record = make_clips(), make_record(40)
    spec = ViewSpec(num_views=3)
    moved = 0
    for i in range(6):
        plain = cut_views(clips, record, tf.constant([i, 2]), spec, True)
        shuffled = cut_views(clips, record, tf.constant([i, 2]), spec, True, shuffle_frames=True)
        for key in ("view_start", "view_span", "speed", "backward"):
            np.testing.assert_array_equal(plain[key].numpy(), shuffled[key].numpy())
        levels, mixed = (
            frame_levels(plain["video"].numpy()),
            frame_levels(shuffled["video"].numpy()),
        )
        np.testing.assert_array_equal(np.sort(levels, axis=1), np.sort(mixed, axis=1))
        audio, mixed_audio = plain["audio"].numpy(), shuffled["audio"].numpy()
        for k in range(3):
            rows = {r.tobytes() for r in audio[k]}
            assert {r.tobytes() for r in mixed_audio[k]} == rows
            moved += int(not np.array_equal(levels[k], mixed[k]))
            moved += int(not np.array_equal(audio[k], mixed_audio[k]))
    assert moved >= 30  # Nearly every one of the 36 views is out of order.


def test_views_share_one_crop():
    # Frames with a horizontal ramp: a shared crop gives the same columns in every view.
    clips = make_clips()
    ramp = np.tile(np.arange(24, dtype=np.uint8)[None, :, None] * 10, (20, 1, 3))
    record = make_record(40)
    record["frames"] = tf.stack([tf.io.encode_jpeg(ramp) for _ in range(40)])
    out = cut_views(clips, record, tf.constant([4, 4]), ViewSpec(num_views=3), True)
    columns = out["video"].numpy().mean(axis=(2, 4))  # [K, T, S]
    np.testing.assert_allclose(columns, np.broadcast_to(columns[:1, :1], columns.shape))


def test_color_jitter_gives_each_view_one_colour_cast_and_keeps_brightness():
    clips = make_clips()
    stripes = np.zeros((20, 24, 3), np.uint8)
    stripes[:, :8, 0], stripes[:, 8:16, 1], stripes[:, 16:, 2] = 200, 150, 100
    stripes[::2] += 40  # Some grey in each stripe, so saturation has something to change.
    record = make_record(40)
    record["frames"] = tf.stack([tf.io.encode_jpeg(stripes) for _ in range(40)])
    seed = tf.constant([5, 1])
    plain = cut_views(clips, record, seed, ViewSpec(num_views=3), True)
    jittered = cut_views(clips, record, seed, ViewSpec(num_views=3, color_jitter=0.8), True)
    for key in ("view_start", "view_span", "speed", "backward", "audio"):
        np.testing.assert_array_equal(plain[key].numpy(), jittered[key].numpy())
    video, before = jittered["video"].numpy(), plain["video"].numpy()
    for k in range(3):  # One hue shift and saturation factor for all frames of a view.
        np.testing.assert_array_equal(video[k], np.broadcast_to(video[k, :1], video[k].shape))
    means = video.mean(axis=(1, 2, 3))  # [K, 3]: each view's colour cast differs
    assert np.abs(means[:, None] - means[None]).max(axis=-1)[np.triu_indices(3, 1)].min() > 0.02
    np.testing.assert_allclose(video.max(axis=-1), before.max(axis=-1), atol=1e-5)  # HSV value
    evaluation = [
        cut_views(clips, record, seed, ViewSpec(num_views=3, color_jitter=c), False)
        for c in (0.0, 0.8)
    ]
    np.testing.assert_array_equal(evaluation[0]["video"], evaluation[1]["video"])


def test_view_spec_validation():
    assert ViewSpec(speeds=[1, 2]).speeds == (1, 2)
    for bad in (
        {"speeds": (1, 1)},
        {"speeds": (0, 2)},
        {"num_views": 0},
        {"backward_probability": 1.5},
        {"audio_speed": "stretch"},
        {"color_jitter": 1.5},
    ):
        with pytest.raises(ValueError):
            ViewSpec(**bad)
    # A fraction is refused, not truncated (2.5 would train as 2, and 1.5 would fail
    # later as "(1, 1)"); so are a bare number and a bool.
    for speeds in ((1, 2.5), (1, 1.5), 2, (1, True)):
        with pytest.raises(
            ValueError,
            match=r"^speeds must be distinct positive integers, got " + re.escape(repr(speeds)),
        ):
            ViewSpec(speeds=speeds)
    with pytest.raises(ValueError, match=r"^num_views must be an integer >= 1, got 2.5"):
        ViewSpec(num_views=2.5)


class _ViewsTask(Task):
    def train_example(self, clips, record, seed):
        return cut_views(clips, record, seed, ViewSpec(), True)


def test_train_dataset_cuts_views(tiny_prepared):
    from avts_tf.data.pipeline import train_dataset

    dataset = train_dataset(tiny_prepared, batch_size=4, task=_ViewsTask(), spec=tiny.SPEC)
    batch = next(iter(dataset))
    assert batch["video"].shape == (4, 2) + tiny.VIDEO_SHAPE
    assert batch["audio"].shape == (4, 2) + tiny.AUDIO_SHAPE
    assert batch["video"].dtype == tf.float32 and batch["audio"].dtype == tf.float32
    for key, dtype in (
        ("view_start", tf.int64),
        ("view_span", tf.int64),
        ("speed", tf.int32),
        ("backward", tf.int32),
        ("video_id", tf.int64),
        ("label", tf.int64),
    ):
        assert batch[key].dtype == dtype, key
    window = int(round(tiny.SPEC.window_seconds(tiny.FPS) * tiny.SPEC.log_mel.sample_rate))
    speeds = np.array(ViewSpec().speeds)[batch["speed"].numpy()]
    np.testing.assert_array_equal(batch["view_span"].numpy(), speeds * window)
    start = batch["view_start"].numpy()
    assert (start >= 0).all()
    assert (start + batch["view_span"].numpy() <= 3 * tiny.SPEC.log_mel.sample_rate).all()
    assert np.isfinite(batch["audio"].numpy()).all()
