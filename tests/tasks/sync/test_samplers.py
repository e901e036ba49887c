"""Exact timestamp checks of every negative sampler (all times in audio samples)."""

import numpy as np
import pytest
import tensorflow as tf

from avts_tf.tasks.sync.samplers import (
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
            tf.constant(video_start, tf.int64),
            tf.constant(WINDOW, tf.int64),
            tf.constant(max_start, tf.int64),
            RATE,
            tf.constant([s, 7], tf.int32),
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
    # 0.5-0.6 s shifts cannot tile a 2.2 s range of starts (k = 2 gives 0.55 s... but
    # 1.9 s needs k in [1.58, 1.9]: no whole number of blocks).
    assert all(not v for _, v in draw(sampler, 1000, 30400, seeds=10))
    # A record exactly one window long leaves no room to shift.
    assert all(not v for _, v in draw(SuperHardNegativeSampler(0.5), 0, 0, seeds=10))
    with pytest.raises(ValueError, match="min_shift_s must be > 0"):
        SuperHardNegativeSampler(min_shift_s=0)


def _starts_in_a_short_record(sampler, draws=3000):
    """Positive (video) and negative starts on 3 s records with 1 s windows, video start
    uniform over [0, 2 s] on a 25 fps frame grid, as the pipeline draws it."""
    max_start = 2 * RATE
    frames = np.random.default_rng(0).integers(0, 50 + 1, draws)
    video = np.round(frames * RATE / 25).astype(np.int64)

    @tf.function
    def one(v, seed):
        return sampler.sample(
            v, tf.constant(WINDOW, tf.int64), tf.constant(max_start, tf.int64), RATE, seed
        )

    seeds = np.stack([np.arange(draws), np.full(draws, 11)], 1).astype(np.int32)
    out = [one(tf.constant(v), tf.constant(s)) for v, s in zip(video, seeds, strict=True)]
    starts = np.array([int(a) for a, _ in out])
    valid = np.array([bool(b) for _, b in out])
    return video, starts, valid, max_start


def _near_edge(starts, max_start):
    quarter = RATE // 4
    return float(np.mean((starts < quarter) | (starts > max_start - quarter)))


@pytest.mark.parametrize(
    "sampler", [HardNegativeSampler(), SuperHardNegativeSampler(0.5)], ids=["hard", "super_hard"]
)
def test_negative_starts_have_the_positives_distribution(sampler):
    video, starts, valid, max_start = _starts_in_a_short_record(sampler)
    # Super-hard: the last sample of an odd-length block has no partner; here that is the
    # latest start (frame 50 of 51), so about 2% of draws fall back to easy.
    assert valid.mean() > 0.97
    video, starts = video[valid], starts[valid]
    # Positives start within 0.25 s of an end 25% of the time; so must the negatives
    # (uniform draws among allowed windows would give 58% for hard and 18% for super-hard).
    assert _near_edge(video, max_start) == pytest.approx(0.25, abs=0.03)
    assert _near_edge(starts, max_start) == pytest.approx(_near_edge(video, max_start), abs=0.03)
    bins = np.linspace(0, max_start + 1, 9)
    positives = np.histogram(video, bins)[0] / len(video)
    negatives = np.histogram(starts, bins)[0] / len(starts)
    np.testing.assert_allclose(negatives, positives, atol=0.03)
    shift = np.abs(starts - video)
    if isinstance(sampler, HardNegativeSampler):
        assert np.all(shift >= WINDOW)  # never overlapping
    else:
        assert np.all((shift >= RATE // 2) & (shift < WINDOW))
