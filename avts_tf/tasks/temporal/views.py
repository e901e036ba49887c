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
import numbers
from typing import Any

import gin
import tensorflow as tf

from avts_tf.data import records
from avts_tf.data.audio_features import LogMelSpec, log_mel_spectrogram
from avts_tf.tasks.temporal.ordering import I_BEFORE_J, J_BEFORE_I, OVERLAP

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
        color_jitter: Training views' colour jitter strength ``c`` (ours; 0: off): each view
            draws a hue shift in ``[-c/2, c/2]`` turns and a saturation factor in
            ``[1 - c, 1 + c]``, the same for all its frames, so views of one video do not
            share a colour cast while brightness (and so direction and order cues) is kept.
    """

    num_views: int = 2
    speeds: tuple[int, ...] = (1, 2, 4)
    backward_probability: float = 0.5
    audio_speed: str = "hop"
    color_jitter: float = 0.0

    def __post_init__(self) -> None:
        if not _is_count(self.num_views):
            raise ValueError(f"num_views must be an integer >= 1, got {self.num_views!r}.")
        speeds = tuple(self.speeds) if isinstance(self.speeds, (tuple, list)) else ()
        if (
            not speeds or not all(_is_count(s) for s in speeds) or len(set(speeds)) != len(speeds)
        ):  # int() would take 2.5 as 2
            raise ValueError(f"speeds must be distinct positive integers, got {self.speeds!r}.")
        object.__setattr__(self, "speeds", tuple(int(s) for s in speeds))
        if not 0.0 <= self.backward_probability <= 1.0:
            raise ValueError(
                f"backward_probability must be in [0, 1], got {self.backward_probability}."
            )
        if not 0.0 <= self.color_jitter <= 1.0:
            raise ValueError(f"color_jitter must be in [0, 1], got {self.color_jitter}.")
        if self.audio_speed not in AUDIO_SPEEDS:
            raise ValueError(
                f"audio_speed must be one of {AUDIO_SPEEDS}, got {self.audio_speed!r}."
            )


def _is_count(value: Any) -> bool:
    """Whether ``value`` is an integer >= 1 (not a bool, not a float such as 2.5)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


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


def _choose_feasible(feasible: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """The ``floor(u * n)``-th True entry of ``feasible`` ``[C]`` (``n`` True entries)."""
    count = tf.reduce_sum(tf.cast(feasible, tf.int64))
    rank = tf.minimum(tf.cast(tf.floor(u * tf.cast(count, tf.float64)), tf.int64), count - 1)
    position = tf.cumsum(tf.cast(feasible, tf.int64)) - 1
    return tf.argmax(tf.logical_and(feasible, tf.equal(position, rank)), output_type=tf.int32)


def _uniform_in(low: tf.Tensor, high: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """``low + floor(u * (high - low + 1))`` for ``u`` in ``[0, 1)``: uniform over the integers."""
    high = tf.maximum(high, low)
    width = tf.cast(high - low + 1, tf.float64)
    return low + tf.minimum(tf.cast(tf.floor(u * width), tf.int64), high - low)


def place_views(
    lengths: tf.Tensor,
    last: tf.Tensor,
    class_u: tf.Tensor,
    start_u: tf.Tensor,
    targets: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Start frames of K views so that each view ``j >= 1`` has a chosen order to view 0.

    Where the record is long enough (``L_0 + 2 max L_j`` frames), view 0's start is
    uniform over the starts that leave room for every class of every pair, and the class
    of each pair ``(0, j)`` (``ordering.ORDER_CLASSES`` of view 0 against view ``j``) is
    uniform over all three: view 0's position then says nothing of any class, so no
    ordering can be read from view 0 alone (its place in the video may show in its
    content). In shorter records the class of pair ``(0, j)`` is drawn uniformly among
    the classes still feasible given those drawn for views ``1 .. j - 1`` and view 0's
    start is uniform over the starts that leave room for all of them. ``targets``
    (evaluation) are taken where feasible, else "overlap". Each view ``j``'s start is
    uniform over the starts that give its class.

    Args:
        lengths: ``[K]`` int64 frames spanned by each view.
        last: ``[K]`` int64 latest start frame of each view.
        class_u: ``[K]`` float64 uniforms in ``[0, 1)`` choosing each class.
        start_u: ``[K]`` float64 uniforms in ``[0, 1)`` placing each start.
        targets: Optional ``[K]`` int32 wanted classes (evaluation); entry 0 unused.

    Returns:
        ``(start [K] int64, classes [K] int32)``; ``classes[0]`` is "overlap".
    """
    k = lengths.shape[0]
    low, high = tf.constant(0, tf.int64), last[0]
    if k > 1:  # The starts of view 0 that leave every class of every pair feasible.
        balanced_low = tf.reduce_max(lengths[1:])
        balanced_high = tf.reduce_min(last[1:] - lengths[0])
        balanced = balanced_low <= balanced_high
        low = tf.where(balanced, balanced_low, low)
        high = tf.where(balanced, balanced_high, high)
    classes = [tf.constant(OVERLAP, tf.int32)]
    for j in range(1, k):
        # j after 0 (0 before j) needs f0 <= last_j - L0; j before 0 needs f0 >= L_j.
        can_follow = low <= tf.minimum(high, last[j] - lengths[0])
        can_precede = tf.maximum(low, lengths[j]) <= high
        feasible = tf.stack([tf.constant(True), can_follow, can_precede])
        if targets is None:
            chosen = _choose_feasible(feasible, class_u[j])
        else:
            chosen = tf.where(tf.gather(feasible, targets[j]), targets[j], OVERLAP)
        low = tf.where(chosen == J_BEFORE_I, tf.maximum(low, lengths[j]), low)
        high = tf.where(chosen == I_BEFORE_J, tf.minimum(high, last[j] - lengths[0]), high)
        classes.append(chosen)
    first = _uniform_in(low, high, start_u[0])
    starts = [first]
    for j in range(1, k):
        follow = (first + lengths[0], last[j])
        precede = (tf.constant(0, tf.int64), first - lengths[j])
        overlap = (
            tf.maximum(first - lengths[j] + 1, 0),
            tf.minimum(last[j], first + lengths[0] - 1),
        )
        bounds = [
            tf.where(classes[j] == I_BEFORE_J, f, tf.where(classes[j] == J_BEFORE_I, p, o))
            for f, p, o in zip(follow, precede, overlap, strict=True)
        ]
        starts.append(_uniform_in(bounds[0], bounds[1], start_u[j]))
    return tf.stack(starts), tf.stack(classes)


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
    ``backward_probability``, then the order of each view ``j >= 1`` to view 0 uniform
    over the classes the record can hold and starts placed accordingly
    (:func:`place_views`), all from ``seed``.

    Evaluation (deterministic, class-balanced): view ``g = clip_index * K + k`` (shifted
    by a hash of the record id) takes direction ``g mod 2`` and the holdable speed
    ``((g mod 2c) // 2 + g mod 2) mod c`` (``c`` holdable speeds), so every (speed,
    direction) pair occurs once in each ``2c`` consecutive views; the order of view
    ``j`` to view 0 is ``(clip_index + hash + j - 1) mod 3`` (each class once in three
    consecutive examples) where the record can hold it, else "overlap"; starts are
    placed from ``seed`` (the reader derives it from the record and clip index).

    Returns:
        ``start_frame`` [K] int64, ``speed`` [K] int32 (index into ``spec.speeds``),
        ``backward`` [K] int32, ``view_start`` [K] int64 (first audio sample),
        ``view_span`` [K] int64 (samples covered).
    """
    k = spec.num_views
    last, holdable = holdable_speeds(clips, record, spec)
    indices = tf.where(holdable)[:, 0]
    count = tf.size(indices, out_type=tf.int64)
    with tf.control_dependencies(
        [tf.debugging.assert_positive(count, message="record holds none of the view speeds")]
    ):
        count = tf.identity(count)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    start_u = tf.random.stateless_uniform([k], seeds[3], dtype=tf.float64)
    if training:
        pick = tf.random.stateless_uniform([k], seeds[0], 0, count, dtype=tf.int64)
        speed = tf.gather(indices, pick)
        backward = tf.random.stateless_uniform([k], seeds[1]) < spec.backward_probability
        class_u = tf.random.stateless_uniform([k], seeds[2], dtype=tf.float64)
        targets = None
    else:
        position = tf.cast(clip_index, tf.int64) * k + tf.range(k, dtype=tf.int64)
        record_hash = tf.strings.to_hash_bucket_fast(record["id"], 2**30)
        g = position + record_hash % (2 * count)
        direction = g % 2
        speed = tf.gather(indices, ((g % (2 * count)) // 2 + direction) % count)
        backward = direction == 1
        class_u = tf.zeros([k], tf.float64)
        example = tf.cast(clip_index, tf.int64) + record_hash
        targets = tf.cast((example + tf.range(k, dtype=tf.int64) - 1) % 3, tf.int32)
    speeds = tf.gather(tf.constant(spec.speeds, tf.int64), speed)
    lengths = speeds * clips.spec.num_frames * clips.spec.frame_stride
    start, _ = place_views(lengths, tf.gather(last, speed), class_u, start_u, targets)
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
    clips: Any,
    record: Record,
    start_sample: tf.Tensor,
    speed_index: tf.Tensor,
    backward: tf.Tensor,
    spec: ViewSpec,
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

    mel = tf.switch_case(tf.cast(speed_index, tf.int32), [branch(s) for s in spec.speeds])
    return tf.cond(backward > 0, lambda: tf.reverse(mel, axis=[0]), lambda: mel)


def _permutations(seed: tf.Tensor, rows: int, length: int) -> tf.Tensor:
    """``rows`` random permutations of ``range(length)``, ``[rows, length]`` int32."""
    return tf.argsort(tf.random.stateless_uniform([rows, length], seed), axis=1)


def jitter_colors(
    frames: tf.Tensor, strength: float, hue_seed: tf.Tensor, saturation_seed: tf.Tensor
) -> tf.Tensor:
    """One hue shift and saturation factor for all ``frames`` ([T, H, W, 3] in [0, 1])."""
    frames = tf.image.stateless_random_hue(frames, strength / 2, hue_seed)
    frames = tf.image.stateless_random_saturation(
        frames, 1.0 - strength, 1.0 + strength, saturation_seed
    )
    return tf.clip_by_value(frames, 0.0, 1.0)


def cut_views(
    clips: Any,
    record: Record,
    seed: tf.Tensor,
    spec: ViewSpec,
    training: bool,
    clip_index: tf.Tensor | int = 0,
    num_clips: tf.Tensor | int = 1,
    shuffle_frames: bool = False,
) -> dict[str, tf.Tensor]:
    """The K views of one record, for use inside a ``tf.data`` map.

    The K video clips share one crop (and flip), so views differ only in time; colour
    augmentations (``ViewSpec.color_jitter``, the clip spec's ``brightness``, ``saturation``
    and ``grayscale``) are drawn per view.

    Args:
        clips: ``avts_tf.data.clips.Clips`` of the dataset.
        record: A parsed record (``avts_tf.data.records.parse``).
        seed: ``[2]`` int32 stateless seed of the example.
        spec: How views are drawn.
        training: Random views and crop (else deterministic, balanced, central crop).
        clip_index: Evaluation example index of this record (see ``draw_views``).
        num_clips: Evaluation examples per record.
        shuffle_frames: A control: each view's frames, and its log-mel frames, in a
            random order (from ``seed``), which removes the cue of playback direction.

    Returns:
        ``video`` [K, T, S, S, 3] float32, ``audio`` [K, frames, mels, 1] float32,
        ``view_start`` [K] int64, ``view_span`` [K] int64, ``speed`` [K] int32,
        ``backward`` [K] int32, ``video_id`` int64 and ``label`` int64.
    """
    draw_seed, crop_seed, shuffle_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    views = draw_views(clips, record, draw_seed, spec, training, clip_index, num_clips)
    k, t = spec.num_views, clips.spec.num_frames
    indices = view_frame_indices(clips, views, spec)
    video_seed, audio_seed = tf.unstack(tf.random.experimental.stateless_split(shuffle_seed, 2))
    if shuffle_frames:
        indices = tf.gather(indices, _permutations(video_seed, k, t), batch_dims=1)
    frames = clips.crop(clips.decode(record, tf.reshape(indices, [-1])), training, crop_seed)
    size = clips.spec.crop_size
    video = tf.reshape(frames, [k, t, size, size, 3])
    if training and spec.color_jitter > 0:
        jitter_seeds = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(seed, 1), 2 * k
        )
        video = tf.stack(
            [
                jitter_colors(
                    video[i], spec.color_jitter, jitter_seeds[2 * i], jitter_seeds[2 * i + 1]
                )
                for i in range(k)
            ]
        )
    if training and clips.changes_colors:  # the clip spec's colour draws, one per view
        color_seeds = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(seed, 2), k
        )
        video = tf.stack([clips.color(video[i], True, color_seeds[i]) for i in range(k)])
    audio = tf.stack(
        [
            view_audio(
                clips, record, views["view_start"][i], views["speed"][i], views["backward"][i], spec
            )
            for i in range(k)
        ]
    )
    if shuffle_frames:
        audio = tf.gather(audio, _permutations(audio_seed, k, audio.shape[1]), batch_dims=1)
    return {
        "video": video,
        "audio": audio,
        "view_start": views["view_start"],
        "view_span": views["view_span"],
        "speed": views["speed"],
        "backward": views["backward"],
        "video_id": records.video_id(record),
        "label": record["label_index"],
    }
