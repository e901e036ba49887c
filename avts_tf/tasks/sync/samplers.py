"""Negative samplers: where the out-of-sync audio window comes from.

AVTS uses three kinds of negatives for a video window starting at ``v`` and lasting ``L``
(audio samples), in a record whose window starts range over ``[0, M]``:

* ``easy``: audio of another video. Cut over the batch by the input pipeline (the audio
  of the next example), so the tf.data side only marks it here.
* ``hard``: the same video, an audio window that does not overlap the video window:
  ``|a - v| >= L + min_gap``.
* ``super_hard``: the same video, overlapping but shifted: ``min_shift <= |a - v| <= max_shift``
  with ``max_shift < L``.

**Distribution of start positions (ours).** The video start ``v`` (and so the positive's
audio start) is uniform over ``[0, M]``. A negative drawn uniformly among the windows
allowed for that ``v`` would crowd the ends of the record (for hard negatives of 1 s on
3 s records, 58% started within 0.25 s of an end against 25% of positives), and since
ingestion zero-pads short audio, edge silence would tell a negative from a positive. Both
samplers below draw the negative *jointly* with ``v``, through measure-preserving maps of
``[0, M]``, so a negative's start is distributed exactly as the positives' starts:

* ``hard``: ``a = (v + d) mod (M + 1)`` with ``d`` uniform on ``[r, M + 1 - r]``,
  ``r = L + min_gap``. On the circle ``[0, M + 1)`` both arcs between ``v`` and ``a`` are at
  least ``r``, so the windows never overlap, and ``a`` is uniform on ``[0, M]`` like ``v``.
  A record holds one when ``M + 1 >= 2 r``.
* ``super_hard``: ``[0, M]`` is tiled by ``k`` equal blocks of ``2 d`` samples with
  ``min_shift <= d <= max_shift`` (``k`` drawn uniformly among the tilings that exist);
  the first half of each block is paired with its second half (``a = v + d`` or
  ``v - d``). This is an involution of ``[0, M]`` that preserves length, so ``(v, a)`` is
  exchangeable and ``a`` has the positives' distribution. A record holds one when such a
  tiling exists (``k`` blocks with ``(M + 1) / (2 max_shift) <= k <= (M + 1) / (2 min_shift)``);
  the last sample of a block of odd length has no partner and gets no super-hard negative.

Samplers that cut from the same video run inside ``tf.data`` with explicit start times;
each returns the audio start and a ``valid`` flag. A record too short for the negative
(for example a 1.5 s clip and a 1 s window cannot hold a non-overlapping window) yields
``valid=False``; the objective then uses an easy negative for that example and counts it
as easy, so no pair is ever mislabelled.

All times are integer audio sample indices, so tests can check them exactly.
"""

from __future__ import annotations

import abc
import math

import gin
import tensorflow as tf

from avts_tf.registry import SAMPLERS

NEGATIVE_TYPES: tuple[str, ...] = ("easy", "hard", "super_hard")
"""Negative kinds, in the order used by mixtures and per-type metrics."""


class NegativeSampler(abc.ABC):
    """Base class: picks the audio start of a negative for one video window.

    Times are integer audio sample indices, so alignment is exact.

    Attributes:
        name: The negative kind, one of ``NEGATIVE_TYPES``.
        in_batch: True when the negative is taken from another example of the batch.
    """

    name: str = ""
    in_batch: bool = False

    @abc.abstractmethod
    def sample(
        self,
        video_start: tf.Tensor,
        window: tf.Tensor,
        max_start: tf.Tensor,
        sample_rate: int,
        seed: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Audio window start and whether one exists.

        Args:
            video_start: Start of the video window, in audio samples (int64 scalar).
            window: Length of the audio window, in samples (int64 scalar).
            max_start: Latest possible audio window start, in samples (int64 scalar).
            sample_rate: Audio rate in Hz, to convert the sampler's seconds.
            seed: ``[2]`` int32 stateless seed.

        Returns:
            ``(audio_start, valid)``: int64 sample index and bool scalar.
        """


def _to_samples(seconds: float, sample_rate: int) -> int:
    return int(math.ceil(seconds * sample_rate - 1e-9))


@SAMPLERS.register("easy")
class EasyNegativeSampler(NegativeSampler):
    """Audio of another video, taken from the next example of the batch."""

    name = "easy"
    in_batch = True

    def sample(self, video_start, window, max_start, sample_rate, seed):  # noqa: D102
        return video_start, tf.constant(True)

    @staticmethod
    def next_in_batch(values: tf.Tensor, video_id: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Each example's partner: ``values`` of the next example (cyclically).

        Returns ``(partner_values, valid)``; ``valid`` is False where the next example
        comes from the same video.
        """
        partner_id = tf.roll(video_id, shift=-1, axis=0)
        return tf.roll(values, shift=-1, axis=0), tf.not_equal(partner_id, video_id)


@SAMPLERS.register("hard")
class HardNegativeSampler(NegativeSampler):
    """Same video, audio window not overlapping the video window.

    Args:
        min_gap_s: Minimum time between the end of one window and the start of the other.
    """

    name = "hard"

    def __init__(self, min_gap_s: float = 0.0) -> None:
        if min_gap_s < 0:
            raise ValueError(f"hard min_gap_s must be >= 0, got {min_gap_s}.")
        self.min_gap_s = float(min_gap_s)

    def sample(self, video_start, window, max_start, sample_rate, seed):  # noqa: D102
        reach = window + _to_samples(self.min_gap_s, sample_rate)
        circle = max_start + 1
        valid = circle >= 2 * reach
        shift = tf.random.stateless_uniform(
            [],
            seed=seed,
            minval=reach,
            maxval=tf.maximum(circle - reach + 1, reach + 1),
            dtype=tf.int64,
        )
        start = tf.math.floormod(video_start + shift, tf.maximum(circle, 1))
        return tf.where(valid, start, tf.zeros_like(start)), valid


@SAMPLERS.register("super_hard")
class SuperHardNegativeSampler(NegativeSampler):
    """Same video, audio window overlapping the video window but shifted.

    Args:
        min_shift_s: Smallest shift in seconds.
        max_shift_s: Largest shift; ``None`` means one sample short of the window, so the
            two windows always overlap.
    """

    name = "super_hard"

    def __init__(self, min_shift_s: float = 0.5, max_shift_s: float | None = None) -> None:
        if min_shift_s <= 0:
            raise ValueError(f"super_hard min_shift_s must be > 0, got {min_shift_s}.")
        self.min_shift_s = float(min_shift_s)
        self.max_shift_s = max_shift_s

    def sample(self, video_start, window, max_start, sample_rate, seed):  # noqa: D102
        min_shift = tf.constant(_to_samples(self.min_shift_s, sample_rate), tf.int64)
        max_shift = window - 1
        if self.max_shift_s is not None:
            max_shift = tf.minimum(
                max_shift, int(math.floor(self.max_shift_s * sample_rate + 1e-9))
            )
        # Tilings of [0, M + 1) by k blocks of 2d samples, min_shift <= d <= max_shift.
        # Boundaries are rounded: a block of floor/ceil(2d) samples keeps its half in range.
        length = tf.cast(max_start + 1, tf.float64)
        most = tf.floor(length / tf.cast(2 * min_shift, tf.float64))
        fewest = tf.maximum(tf.math.ceil(length / tf.cast(2 * max_shift, tf.float64)), 1.0)
        choices = tf.cast(most - fewest + 1.0, tf.int64)
        valid = tf.logical_and(choices > 0, max_shift >= min_shift)
        pick = tf.random.stateless_uniform(
            [], seed=seed, minval=0, maxval=tf.maximum(choices, 1), dtype=tf.int64
        )
        blocks = fewest + tf.cast(pick, tf.float64)
        size = length / blocks
        index = tf.floor(tf.cast(video_start, tf.float64) / size)
        begin = tf.cast(tf.round(index * size), tf.int64)
        end = tf.cast(tf.round((index + 1.0) * size), tf.int64)
        # A boundary rounded past v puts v in the neighbouring block.
        index = tf.where(video_start < begin, index - 1.0, index)
        index = tf.where(video_start >= end, index + 1.0, index)
        begin = tf.cast(tf.round(index * size), tf.int64)
        end = tf.cast(tf.round((index + 1.0) * size), tf.int64)
        half = (end - begin) // 2
        offset = video_start - begin
        start = tf.where(offset < half, video_start + half, video_start - half)
        shift = tf.abs(start - video_start)
        valid = tf.logical_and(valid, offset < 2 * half)  # not the odd sample of a block
        valid = tf.logical_and(valid, (shift >= min_shift) & (shift <= max_shift))
        valid = tf.logical_and(valid, (start >= 0) & (start <= max_start))
        return tf.where(valid, start, tf.zeros_like(start)), valid


@gin.configurable(module="samplers")
def negative_samplers(
    hard_min_gap_s: float = 0.0, super_hard_min_shift_s: float = 0.5
) -> dict[str, NegativeSampler]:
    """The samplers the input pipeline cuts from the same video, keyed by kind."""
    return {
        "hard": HardNegativeSampler(min_gap_s=hard_min_gap_s),
        "super_hard": SuperHardNegativeSampler(min_shift_s=super_hard_min_shift_s),
    }
