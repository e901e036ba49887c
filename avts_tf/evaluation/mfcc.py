"""The MFCC baseline, as the ESC-50 paper's baseline defines it.

Per file: 40 MFCCs per frame (``tf.signal.mfccs_from_log_mel_spectrograms`` of the
``LogMelSpec`` defaults: 40 bands, 25 ms windows, 10 ms hop) and their deltas (the HTK /
librosa regression over 9 frames, edges repeated); the mean and the standard deviation
of each over all the file's frames: ``4 * 40 = 160`` numbers (Piczak, "ESC: Dataset for
Environmental Sound Classification", 2015, pools MFCC statistics over the clip the same
way; the deltas follow common practice). With ``window`` set, the same statistics are
taken per audio window instead (to match a tower's windows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import tensorflow as tf

from avts_tf.data.audio_features import LogMelSpec, log_mel_spectrogram
from avts_tf.evaluation import features, records_io

NUM_COEFFICIENTS = 40
DELTA_WIDTH = 9


def deltas(coefficients: tf.Tensor, width: int = DELTA_WIDTH) -> tf.Tensor:
    """Delta features along frames (axis -2): ``sum_k k (c[t+k] - c[t-k]) / (2 sum_k k^2)``.

    ``k`` runs over ``1 .. (width - 1) / 2``; frames beyond the edges repeat the edge frame
    (HTK's definition; librosa's ``delta`` uses the same weights).
    """
    half = (width - 1) // 2
    frames = tf.shape(coefficients)[-2]
    first = tf.repeat(coefficients[..., :1, :], half, axis=-2)
    last = tf.repeat(coefficients[..., -1:, :], half, axis=-2)
    padded = tf.concat([first, coefficients, last], axis=-2)
    total = tf.zeros_like(coefficients)
    for k in range(1, half + 1):
        ahead = padded[..., half + k : half + k + frames, :]
        behind = padded[..., half - k : half - k + frames, :]
        total += k * (ahead - behind)
    return total / (2.0 * sum(k * k for k in range(1, half + 1)))


def mfcc_statistics(
    log_mel: tf.Tensor, num_coefficients: int = NUM_COEFFICIENTS, with_deltas: bool = True
) -> tf.Tensor:
    """``[..., frames, mel_bins, 1]`` log-mels -> ``[..., 2 or 4 * num_coefficients]``.

    The mean and standard deviation over frames of the MFCCs (then of their deltas).
    """
    mfcc = tf.signal.mfccs_from_log_mel_spectrograms(log_mel[..., 0])[..., :num_coefficients]
    parts = [mfcc, deltas(mfcc)] if with_deltas else [mfcc]
    stats = []
    for part in parts:
        mean, variance = tf.nn.moments(part, axes=[-2])
        stats += [mean, tf.sqrt(variance)]
    return tf.concat(stats, axis=-1)


def mfcc_embed_fn(
    num_coefficients: int = NUM_COEFFICIENTS, with_deltas: bool = True
) -> Callable[[tf.Tensor], tf.Tensor]:
    """``[B, frames, mel_bins, 1]`` log-mels of windows -> ``[B, D]`` MFCC statistics."""

    @tf.function(reduce_retracing=True)
    def embed(log_mel: tf.Tensor) -> tf.Tensor:
        return mfcc_statistics(log_mel, num_coefficients, with_deltas)

    return embed


def _whole_file_fn(
    spec: LogMelSpec, num_coefficients: int, with_deltas: bool
) -> Callable[[dict], tf.Tensor]:
    """``record -> [1, D]``: the statistics over every frame of the file."""

    def stats(record: dict) -> tf.Tensor:
        wave = record["waveform"]
        wave = tf.pad(wave, [[0, tf.maximum(spec.window_samples - tf.shape(wave)[0], 0)]])
        return mfcc_statistics(log_mel_spectrogram(wave, spec), num_coefficients, with_deltas)[None]

    return stats


def mfcc_features(
    data_dir: str | Path,
    window: int | None = None,
    *,
    window_s: float | None = None,
    splits: Sequence[str] | None = None,
    max_windows: int | None = None,
    num_coefficients: int = NUM_COEFFICIENTS,
    with_deltas: bool = True,
    batch_size: int = 256,
    progress: bool = True,
) -> features.Features:
    """MFCC baseline features of a prepared dataset: one per file, or one per window.

    Args:
        data_dir: A prepared dataset.
        window: Window length in samples (to match a tower's windows); with neither it
            nor ``window_s``, one feature per whole file (the standard baseline).
        window_s: Window length in seconds when ``window`` is not given.
        splits: Splits to read (default: all).
        max_windows: At most this many windows per record.
        num_coefficients: MFCCs kept per frame.
        with_deltas: Add the deltas' statistics.
        batch_size: Windows per call.
        progress: Show a progress bar.
    """
    rate = records_io.sample_rate_of(data_dir)
    spec = dataclasses.replace(LogMelSpec(), sample_rate=rate)
    name = f"mfcc{num_coefficients}" + ("+delta" if with_deltas else "")
    if window is None and window_s is None:
        return features.extract(  # Files without sound have no MFCC feature.
            data_dir,
            _whole_file_fn(spec, num_coefficients, with_deltas),
            tf.identity,
            splits,
            batch_size,
            keep_fn=features.has_audio,
            progress=progress,
            info={
                "tower": "mfcc",
                "layer": name,
                "pool": "mean+std over the file",
                "window_samples": "file",
            },
        )
    window = window or int(round(window_s * rate))
    return features.extract(
        data_dir,
        features.audio_windows_fn(spec, window, max_windows=max_windows),
        mfcc_embed_fn(num_coefficients, with_deltas),
        splits,
        batch_size,
        keep_fn=features.has_audio,
        progress=progress,
        info={"tower": "mfcc", "layer": name, "pool": "mean+std", "window_samples": str(window)},
    )
