"""K temporal views of one record: (start, speed, direction) shared by video and audio.

A view at speed ``s`` starting at frame ``f`` covers ``s`` one-speed windows of the
original time: the video takes frames ``f + stride * s * arange(T)`` and the audio the
``s * N`` samples from ``round(f * rate / fps)`` (``N``: one 1x window), brought to the 1x
number of log-mel frames. Backward views reverse the frame order and the spectrogram's
time axis. Times in the example are integer audio samples of the original time, so
ordering labels (``ordering.order_labels``) follow from ``view_start`` and ``view_span``.

All of K, the speeds, the backward probability and the way audio is sped up are our
choices (the paper's abstract states none of them; see ``TSSL.md``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gin
import tensorflow as tf

from avts_tf.data.audio_features import LogMelSpec, log_mel_spectrogram

Record = dict[str, tf.Tensor]
AUDIO_SPEEDS = ("hop", "resample")


@gin.configurable(module="temporal")
@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """How the K views of an example are drawn.

    Attributes:
        num_views: Views per video per example (K); our choice.
        speeds: Playback speeds (frame skips); one is drawn per view among those the
            record can hold (video span and audio window both inside the record); our
            choice ({1, 2, 4} on short synthetic records, 8 optional).
        backward_probability: Chance a training view plays backward; our choice.
        audio_speed: ``"hop"``: log-mel of the ``s * N`` samples with hop ``s * H`` (1x
            window length, pitch kept), truncated to the 1x frame count; ``"resample"``:
            the window decimated by ``s`` (mean of ``s`` consecutive samples) then the
            1x log-mel (pitch raised). Our choice.
    """

    num_views: int = 2
    speeds: tuple[int, ...] = (1, 2, 4)
    backward_probability: float = 0.5
    audio_speed: str = "hop"

    def __post_init__(self) -> None:
        object.__setattr__(self, "speeds", tuple(int(s) for s in self.speeds))
        if self.num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {self.num_views}.")
        if not self.speeds or min(self.speeds) < 1 or len(set(self.speeds)) != len(self.speeds):
            raise ValueError(f"speeds must be distinct positive integers, got {self.speeds}.")
        if not 0.0 <= self.backward_probability <= 1.0:
            raise ValueError(
                f"backward_probability must be in [0, 1], got {self.backward_probability}."
            )
        if self.audio_speed not in AUDIO_SPEEDS:
            raise ValueError(
                f"audio_speed must be one of {AUDIO_SPEEDS}, got {self.audio_speed!r}."
            )


def log_mel_with_hop(waveform: tf.Tensor, spec: LogMelSpec, hop_samples: int) -> tf.Tensor:
    """``log_mel_spectrogram`` of ``waveform``: ``spec``'s window, a hop of ``hop_samples``."""
    hop_spec = dataclasses.replace(spec, hop_s=hop_samples / spec.sample_rate)
    if hop_spec.hop_samples != hop_samples:
        raise ValueError(f"hop of {hop_samples} samples not representable at this rate.")
    return log_mel_spectrogram(waveform, hop_spec)


def holdable_speeds(clips: Any, record: Record, spec: ViewSpec) -> tuple[tf.Tensor, tf.Tensor]:
    """Latest start frame per speed and whether the record can hold each speed.

    A speed ``s`` needs ``T * stride * s`` frames from its start and the ``s * N`` audio
    samples from the start's sample (``Clips.windows`` at speed ``s``).

    Returns:
        ``(last_frame, holdable)``: int64 and bool, both ``[len(spec.speeds)]``.
    """
    windows = clips.windows(record, tf.constant(spec.speeds, tf.int64))
    return windows.last_frame, windows.fit()


def draw_views(
    clips: Any,
    record: Record,
    seed: tf.Tensor,
    spec: ViewSpec,
    training: bool,
    clip_index: tf.Tensor | int = 0,
    num_clips: tf.Tensor | int = 1,
) -> dict[str, tf.Tensor]:
    """Start frame, speed and direction of each of the K views (no decoding).

    Training: speeds uniform over the holdable ones, backward with
    ``backward_probability``, starts uniform over the speed's windows, all from ``seed``.
    Evaluation: view ``g = clip_index * K + k`` (shifted by a hash of the record id) takes
    direction ``g mod 2`` and the holdable speed ``((g mod 2c) // 2 + g mod 2) mod c``
    (``c`` holdable speeds), so every (speed, direction) pair occurs once in each ``2c``
    consecutive views; starts are evenly spaced over the ``num_clips * K`` views.

    Returns:
        ``start_frame`` [K] int64, ``speed`` [K] int32 (index into ``spec.speeds``),
        ``backward`` [K] int32, ``view_start`` [K] int64 (first audio sample),
        ``view_span`` [K] int64 (samples covered).
    """
    k = spec.num_views
    last, holdable = holdable_speeds(clips, record, spec)
    indices = tf.where(holdable)[:, 0]
    count = tf.size(indices, out_type=tf.int64)
    with tf.control_dependencies([
        tf.debugging.assert_positive(count, message="record holds none of the view speeds")
    ]):
        count = tf.identity(count)
    if training:
        seeds = tf.random.experimental.stateless_split(seed, 3)
        pick = tf.random.stateless_uniform([k], seeds[0], 0, count, dtype=tf.int64)
        speed = tf.gather(indices, pick)
        backward = tf.random.stateless_uniform([k], seeds[1]) < spec.backward_probability
        last_k = tf.gather(last, speed)
        u = tf.random.stateless_uniform([k], seeds[2], dtype=tf.float64)
        start = tf.cast(tf.floor(u * tf.cast(last_k + 1, tf.float64)), tf.int64)
        start = tf.minimum(start, last_k)
    else:
        position = tf.cast(clip_index, tf.int64) * k + tf.range(k, dtype=tf.int64)
        offset = tf.strings.to_hash_bucket_fast(record["id"], 2**30) % (2 * count)
        g = position + offset
        direction = g % 2
        speed = tf.gather(indices, ((g % (2 * count)) // 2 + direction) % count)
        backward = direction == 1
        last_k = tf.gather(last, speed)
        total = tf.cast(num_clips, tf.int64) * k
        start = tf.where(total > 1, last_k * position // tf.maximum(total - 1, 1), last_k // 2)
    speeds = tf.gather(tf.constant(spec.speeds, tf.int64), speed)
    span = clips.windows(record).window * speeds
    view_start = tf.minimum(clips.frame_to_sample(start), record["num_samples"] - span)
    return {
        "start_frame": start,
        "speed": tf.cast(speed, tf.int32),
        "backward": tf.cast(backward, tf.int32),
        "view_start": view_start,
        "view_span": span,
    }


def view_frame_indices(clips: Any, views: dict[str, tf.Tensor], spec: ViewSpec) -> tf.Tensor:
    """Stored frames of each view, ``[K, T]`` int64 (reversed along T when backward)."""
    speeds = tf.gather(tf.constant(spec.speeds, tf.int64), views["speed"])
    steps = tf.range(clips.spec.num_frames, dtype=tf.int64) * clips.spec.frame_stride
    frames = views["start_frame"][:, None] + speeds[:, None] * steps[None, :]
    return tf.where(views["backward"][:, None] > 0, tf.reverse(frames, axis=[1]), frames)


def view_audio(
    clips: Any, record: Record, start_sample: tf.Tensor, speed_index: tf.Tensor,
    backward: tf.Tensor, spec: ViewSpec,
) -> tf.Tensor:
    """Log-mel ``[frames, mel_bins, 1]`` (1x frame count) of one view's audio window."""
    log_mel = clips.spec.log_mel
    window = clips.windows(record).window
    frames = log_mel.num_frames(window)

    def branch(s: int):
        def cut() -> tf.Tensor:
            wave = record["waveform"][start_sample : start_sample + s * window]
            if spec.audio_speed == "hop":
                mel = log_mel_with_hop(wave, log_mel, s * log_mel.hop_samples)
            else:
                wave = tf.reduce_mean(tf.reshape(wave, [window, s]), axis=1)
                mel = log_mel_spectrogram(wave, log_mel)
            return tf.ensure_shape(mel[:frames], (frames, log_mel.mel_bins, 1))

        return cut

    mel = tf.switch_case(
        tf.cast(speed_index, tf.int32), [branch(s) for s in spec.speeds]
    )
    return tf.cond(backward > 0, lambda: tf.reverse(mel, axis=[0]), lambda: mel)


def cut_views(
    clips: Any,
    record: Record,
    seed: tf.Tensor,
    spec: ViewSpec,
    training: bool,
    clip_index: tf.Tensor | int = 0,
    num_clips: tf.Tensor | int = 1,
) -> dict[str, tf.Tensor]:
    """The K views of one record, for use inside a ``tf.data`` map.

    The K video clips share one crop (and flip), so views differ only in time.

    Args:
        clips: ``avts_tf.data.clips.Clips`` of the dataset.
        record: A parsed record (``avts_tf.data.records.parse``).
        seed: ``[2]`` int32 stateless seed of the example.
        spec: How views are drawn.
        training: Random views and crop (else deterministic, balanced, central crop).
        clip_index: Evaluation example index of this record (see ``draw_views``).
        num_clips: Evaluation examples per record.

    Returns:
        ``video`` [K, T, S, S, 3] float32, ``audio`` [K, frames, mels, 1] float32,
        ``view_start`` [K] int64, ``view_span`` [K] int64, ``speed`` [K] int32,
        ``backward`` [K] int32, ``video_id`` int64 and ``label`` int64.
    """
    draw_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    views = draw_views(clips, record, draw_seed, spec, training, clip_index, num_clips)
    k, t = spec.num_views, clips.spec.num_frames
    indices = view_frame_indices(clips, views, spec)
    frames = clips.crop(clips.decode(record, tf.reshape(indices, [-1])), training, crop_seed)
    size = clips.spec.crop_size
    video = tf.reshape(frames, [k, t, size, size, 3])
    audio = tf.stack([
        view_audio(clips, record, views["view_start"][i], views["speed"][i],
                   views["backward"][i], spec)
        for i in range(k)
    ])
    return {
        "video": video,
        "audio": audio,
        "view_start": views["view_start"],
        "view_span": views["view_span"],
        "speed": views["speed"],
        "backward": views["backward"],
        "video_id": tf.strings.to_hash_bucket_fast(record["id"], 2**62),
        "label": record["label_index"],
    }
