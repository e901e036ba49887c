"""Exact timestamp checks of every negative sampler (all times in audio samples)."""

import numpy as np
import pytest
import tensorflow as tf

from avts_tf.samplers import (
    EasyNegativeSampler,
    HardNegativeSampler,
    SuperHardNegativeSampler,
)

RATE = 16000
WINDOW = RATE  # 1 s windows.


def draw(sampler, video_start, max_start, seeds=200):
    out = []
    for s in range(seeds):
        start, valid = sampler.sample(
            tf.constant(video_start, tf.int64), tf.constant(WINDOW, tf.int64),
            tf.constant(max_start, tf.int64), RATE, tf.constant([s, 7], tf.int32),
        )
        out.append((int(start), bool(valid)))
    return out


def test_easy_is_in_batch_and_keeps_the_video_start():
    sampler = EasyNegativeSampler()
    assert sampler.in_batch
    assert draw(sampler, 8000, 48000, seeds=3) == [(8000, True)] * 3


@pytest.mark.parametrize("min_gap_s", [0.0, 0.25])
@pytest.mark.parametrize("video_start", [0, 16000, 32000, 48000])
def test_hard_never_overlaps_and_keeps_the_gap(video_start, min_gap_s):
    max_start = 48000  # A 4 s record.
    gap = int(np.ceil(min_gap_s * RATE))
    results = draw(HardNegativeSampler(min_gap_s=min_gap_s), video_start, max_start)
    for start, valid in results:
        assert valid
        assert 0 <= start <= max_start
        # Either entirely before (with the gap) or entirely after.
        assert start + WINDOW + gap <= video_start or start >= video_start + WINDOW + gap
    starts = {s for s, _ in results}
    assert len(starts) > 50  # Really random, not a fixed offset.


def test_hard_covers_both_sides():
    starts = [s for s, _ in draw(HardNegativeSampler(), 24000, 64000, seeds=300)]
    assert min(starts) < 24000 - WINDOW and max(starts) >= 24000 + WINDOW


def test_hard_on_a_too_short_record_is_invalid_not_mislabelled():
    # A 1.5 s record with a 1 s window cannot hold a non-overlapping window.
    results = draw(HardNegativeSampler(), 4000, 8000, seeds=20)
    assert all(not valid for _, valid in results)


@pytest.mark.parametrize("video_start", [0, 10000, 40000])
def test_super_hard_overlaps_and_is_shifted_at_least_the_minimum(video_start):
    sampler = SuperHardNegativeSampler(min_shift_s=0.5)
    results = draw(sampler, video_start, 48000)
    for start, valid in results:
        assert valid
        shift = abs(start - video_start)
        assert shift >= 8000  # >= 0.5 s.
        assert shift < WINDOW  # Still overlapping.
        assert 0 <= start <= 48000


def test_super_hard_respects_max_shift_and_reports_impossible_cases():
    sampler = SuperHardNegativeSampler(min_shift_s=0.5, max_shift_s=0.6)
    for start, valid in draw(sampler, 20000, 48000):
        assert valid and 8000 <= abs(start - 20000) <= 9600
    # A record exactly one window long leaves no room to shift.
    assert all(not v for _, v in draw(SuperHardNegativeSampler(0.5), 0, 0, seeds=10))
    with pytest.raises(ValueError, match="min_shift_s must be > 0"):
        SuperHardNegativeSampler(min_shift_s=0)
