"""Colour augmentations of training clips (``ClipSpec.brightness/saturation/grayscale``) on
known pixels: one draw per clip (per view), the same for all its frames, none in evaluation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from avts_tf.data.clips import Clips, ClipSpec
from avts_tf.run_description import _clip_spec_from_json
from avts_tf.tasks.temporal.views import ViewSpec, cut_views

# Two pixels of known hue and saturation, in three frames that differ in brightness.
PIXELS = np.array([[0.4, 0.5, 0.6], [0.6, 0.45, 0.45]], np.float32)
FRAMES = np.stack([np.tile(PIXELS[None] * scale, (2, 1, 1)) for scale in (1.0, 0.9, 0.8)])
LUMA = np.array([0.2989, 0.5870, 0.1140])  # tf.image.rgb_to_grayscale


def colored(seed: int, **settings: float) -> np.ndarray:
    clips = Clips(ClipSpec(**settings), fps=8.0)
    return clips.color(tf.constant(FRAMES), True, tf.constant([seed, 3])).numpy()


def test_off_and_evaluation_leave_pixels_alone():
    np.testing.assert_array_equal(colored(0), FRAMES)
    clips = Clips(ClipSpec(brightness=0.5, saturation=0.5, grayscale=1.0), fps=8.0)
    out = clips.color(tf.constant(FRAMES), False, tf.constant([0, 3])).numpy()
    np.testing.assert_array_equal(out, FRAMES)


def test_brightness_adds_one_shift_to_every_pixel_of_every_frame():
    shifts = []
    for seed in range(20):
        out = colored(seed, brightness=32 / 255)
        shift = out - FRAMES
        np.testing.assert_allclose(shift, np.full_like(shift, shift[0, 0, 0, 0]), atol=1e-6)
        shifts.append(shift[0, 0, 0, 0])
    assert max(np.abs(shifts)) <= 32 / 255 + 1e-6
    assert min(shifts) < -0.06 and max(shifts) > 0.06  # both signs, most of the range


def test_saturation_scales_each_pixel_s_distance_from_its_value_by_one_factor():
    factors = []
    for seed in range(20):
        out = colored(seed, saturation=0.5)
        value = FRAMES.max(axis=-1, keepdims=True)  # HSV value is kept
        np.testing.assert_allclose(out.max(axis=-1, keepdims=True), value, atol=1e-6)
        # In HSV with hue and value kept, channel c -> v - (v - c) * factor.
        factor = (value - out)[0, 0, 0, 0] / (value - FRAMES)[0, 0, 0, 0]
        np.testing.assert_allclose(out, value - (value - FRAMES) * factor, atol=1e-5)
        factors.append(factor)
    assert 0.5 - 1e-5 <= min(factors) < 0.75 and 1.25 < max(factors) <= 1.5 + 1e-5


def test_grayscale_puts_the_luma_in_all_channels_at_its_rate():
    out = colored(0, grayscale=1.0)
    np.testing.assert_allclose(out, np.repeat(FRAMES @ LUMA, 3).reshape(FRAMES.shape), atol=1e-6)
    grey = [np.ptp(colored(seed, grayscale=0.2), axis=-1).max() < 1e-6 for seed in range(200)]
    assert 0.12 < np.mean(grey) < 0.28


def test_brightness_and_saturation_together_shift_and_scale_by_one_draw():
    # Away from the [0, 1] edges the two commute: c -> v + delta - (v - c) * factor.
    value = FRAMES.max(axis=-1, keepdims=True)
    for seed in range(8):
        out = colored(seed, brightness=0.1, saturation=0.5)
        delta = (out.max(axis=-1, keepdims=True) - value)[0, 0, 0, 0]
        factor = (value + delta - out)[0, 0, 0, 0] / (value - FRAMES)[0, 0, 0, 0]
        assert abs(delta) <= 0.1 + 1e-6 and 0.5 - 1e-5 <= factor <= 1.5 + 1e-5
        np.testing.assert_allclose(out, value + delta - (value - FRAMES) * factor, atol=1e-5)


def test_a_training_clip_gets_one_draw_for_all_its_frames():
    # Every stored frame the same image: the colour draw must not vary over the clip.
    image = (np.tile(PIXELS[None], (24, 12, 1)) * 255).astype(np.uint8)
    record = {"frames": tf.stack([tf.io.encode_jpeg(image)] * 20)}
    spec = ClipSpec(num_frames=4, crop_size=16, brightness=0.2, saturation=0.5, grayscale=0.3)
    clips = Clips(spec, fps=8.0)
    plain = Clips(dataclasses.replace(spec, brightness=0.0, saturation=0.0, grayscale=0.0), fps=8.0)
    changed = 0
    for seed in range(6):
        out = clips.video(record, tf.constant(2, tf.int64), True, tf.constant([seed, 1]))
        out = out.numpy()
        np.testing.assert_array_equal(out, np.broadcast_to(out[:1], out.shape))
        base = plain.video(record, tf.constant(2, tf.int64), True, tf.constant([seed, 1]))
        changed += int(np.abs(out - base.numpy()).max() > 1e-3)
        evaluation = [
            c.video(record, tf.constant(2, tf.int64), False, tf.constant([seed, 1]))
            for c in (clips, plain)
        ]
        np.testing.assert_array_equal(evaluation[0], evaluation[1])
    assert changed >= 5


def test_each_temporal_view_gets_its_own_draw():
    image = (np.tile(PIXELS[None], (20, 12, 1)) * 255).astype(np.uint8)
    num_frames, rate = 40, 16000
    record = {
        "frames": tf.stack([tf.io.encode_jpeg(image)] * num_frames),
        "waveform": tf.zeros([num_frames * rate // 8]),
        "num_frames": tf.constant(num_frames, tf.int64),
        "num_samples": tf.constant(num_frames * rate // 8, tf.int64),
        "id": tf.constant("video-a"),
        "label_index": tf.constant(-1, tf.int64),
    }
    clips = Clips(ClipSpec(num_frames=4, crop_size=16, brightness=0.2), fps=8.0)
    out = cut_views(clips, record, tf.constant([5, 1]), ViewSpec(num_views=3), True)
    video = out["video"].numpy()  # [K, T, S, S, 3]
    for k in range(3):
        np.testing.assert_array_equal(video[k], np.broadcast_to(video[k, :1], video[k].shape))
    means = video.mean(axis=(1, 2, 3, 4))
    assert np.abs(means[:, None] - means[None])[np.triu_indices(3, 1)].min() > 1e-3


def test_settings_are_checked_and_recorded():
    for bad in (
        {"brightness": -0.1},
        {"saturation": 1.5},
        {"grayscale": 2.0},
        {"brightness": "0.1"},
    ):
        with pytest.raises(ValueError, match="data.ClipSpec"):
            ClipSpec(**bad)
    spec = ClipSpec(brightness=32 / 255, saturation=0.5, grayscale=0.2)
    assert _clip_spec_from_json(dataclasses.asdict(spec)) == spec
