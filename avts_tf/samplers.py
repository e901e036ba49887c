"""Negative samplers: where the out-of-sync audio window comes from.

AVTS uses three kinds of negatives for a video window starting at ``v`` (seconds) and
lasting ``L`` seconds in a record of ``D`` seconds:

* ``easy``: audio of another video. Cut in the batch by the objective (the audio of
  the next example), so the tf.data side only marks it.
* ``hard``: the same video, an audio window that does not overlap the video window:
  ``a + L + min_gap <= v`` or ``a >= v + L + min_gap``.
* ``super_hard``: the same video, overlapping but shifted: ``min_shift <= |a - v| <= max_shift``
  with ``max_shift < L``.

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


def _uniform_from_intervals(
    lows: tf.Tensor, highs: tf.Tensor, seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Uniform integer from a union of closed integer intervals ``[lows[i], highs[i]]``.

    Empty intervals (``high < low``) are ignored. Returns ``(value, any_nonempty)``;
    ``value`` is ``lows[0]`` clipped to ``>= 0`` when every interval is empty.
    """
    counts = tf.maximum(highs - lows + 1, 0)
    total = tf.reduce_sum(counts)
    u = tf.random.stateless_uniform(
        [], seed=seed, minval=0, maxval=tf.maximum(total, 1), dtype=tf.int64
    )
    cumulative = tf.cumsum(counts)
    index = tf.argmax(tf.cast(cumulative > u, tf.int32), output_type=tf.int32)
    value = lows[index] + (u - (cumulative[index] - counts[index]))
    valid = total > 0
    return tf.where(valid, value, tf.maximum(lows[0], 0)), valid


def _to_samples(seconds: float, sample_rate: int) -> int:
    return int(math.ceil(seconds * sample_rate - 1e-9))


@SAMPLERS.register("easy")
class EasyNegativeSampler(NegativeSampler):
    """Audio of another video, taken from the next example of the batch."""

    name = "easy"
    in_batch = True

    def sample(self, video_start, window, max_start, sample_rate, seed):  # noqa: D102
        return video_start, tf.constant(True)


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
        lows = tf.stack([tf.zeros_like(video_start), video_start + reach])
        highs = tf.stack([video_start - reach, max_start])
        return _uniform_from_intervals(lows, highs, seed)


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
        min_shift = _to_samples(self.min_shift_s, sample_rate)
        max_shift = window - 1
        if self.max_shift_s is not None:
            max_shift = tf.minimum(
                max_shift, int(math.floor(self.max_shift_s * sample_rate + 1e-9))
            )
        lows = tf.maximum(tf.stack([video_start - max_shift, video_start + min_shift]), 0)
        highs = tf.minimum(tf.stack([video_start - min_shift, video_start + max_shift]), max_start)
        return _uniform_from_intervals(lows, highs, seed)


def build_sampler(name: str, **kwargs) -> NegativeSampler:
    """Builds the sampler registered as ``name`` (see ``SAMPLERS.list()``)."""
    return SAMPLERS.build(name, **kwargs)


@gin.configurable(module="samplers")
def negative_samplers(
    hard_min_gap_s: float = 0.0, super_hard_min_shift_s: float = 0.5
) -> dict[str, NegativeSampler]:
    """The samplers the input pipeline cuts from the same video, keyed by kind."""
    return {
        "hard": HardNegativeSampler(min_gap_s=hard_min_gap_s),
        "super_hard": SuperHardNegativeSampler(min_shift_s=super_hard_min_shift_s),
    }
