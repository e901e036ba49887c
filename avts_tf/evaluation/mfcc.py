"""The MFCC baseline: per audio window, the mean and standard deviation of MFCCs over time.

Log-mel spectrograms (``LogMelSpec`` defaults: 40 bands, 25 ms windows, 10 ms hop) go
through ``tf.signal.mfccs_from_log_mel_spectrograms``; the first ``num_coefficients``
coefficients are pooled over the window's frames into ``2 * num_coefficients`` numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import tensorflow as tf

from avts_tf.data.audio_features import LogMelSpec
from avts_tf.evaluation import features, records_io

NUM_COEFFICIENTS = 13


def mfcc_embed_fn(num_coefficients: int = NUM_COEFFICIENTS) -> Callable[[tf.Tensor], tf.Tensor]:
    """``[B, frames, mel_bins, 1]`` log-mels -> ``[B, 2 * num_coefficients]`` MFCC stats."""

    @tf.function(reduce_retracing=True)
    def embed(log_mel: tf.Tensor) -> tf.Tensor:
        mfcc = tf.signal.mfccs_from_log_mel_spectrograms(log_mel[..., 0])[..., :num_coefficients]
        mean, variance = tf.nn.moments(mfcc, axes=[1])
        return tf.concat([mean, tf.sqrt(variance)], axis=-1)

    return embed


def mfcc_features(
    data_dir: str | Path,
    window: int | None = None,
    *,
    window_s: float = 1.0,
    splits: Sequence[str] | None = None,
    max_windows: int | None = None,
    num_coefficients: int = NUM_COEFFICIENTS,
    batch_size: int = 256,
    progress: bool = True,
) -> features.Features:
    """MFCC baseline features of every audio window of a prepared dataset.

    Args:
        data_dir: A prepared dataset.
        window: Window length in samples (to match a tower's windows); default
            ``window_s`` seconds.
        window_s: Window length in seconds when ``window`` is not given.
        splits: Splits to read (default: all).
        max_windows: At most this many windows per record.
        num_coefficients: MFCCs kept per frame.
        batch_size: Windows per call.
        progress: Show a progress bar.
    """
    rate = records_io.sample_rate_of(data_dir)
    spec = dataclasses.replace(LogMelSpec(), sample_rate=rate)
    window = window or int(round(window_s * rate))
    return features.extract(
        data_dir,
        features.audio_windows_fn(spec, window, max_windows=max_windows),
        mfcc_embed_fn(num_coefficients),
        splits,
        batch_size,
        progress=progress,
        info={"tower": "mfcc", "layer": f"mfcc{num_coefficients}", "pool": "mean+std",
              "window_samples": str(window)},
    )
