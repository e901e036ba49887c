"""Shared cutting of clips from decoded records: windows, frame decoding, crops, log-mel.

Every task cuts its examples with these pieces (``avts_tf.tasks.base.Task``), so frame
decoding, crops and audio features are written once. Times are explicit: a clip starting
at frame ``f`` of a record stored at ``fps`` starts at audio sample
``round(f * sample_rate / fps)``, and every window start is an int64 sample index.

Only the JPEGs of a clip's frames are decoded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import gin
import tensorflow as tf

from avts_tf.data import records
from avts_tf.data.audio_features import LogMelSpec, log_mel_spectrogram
from avts_tf.settings import number_setting

Record = Mapping[str, tf.Tensor]


@gin.configurable(module="data")
@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """Shape of one training example.

    Attributes:
        num_frames: Frames per clip (``T``).
        frame_stride: Take every ``frame_stride``-th stored frame.
        crop_size: Side of the square crop fed to the video tower.
        resize_short_side: Resize stored frames to this short side before cropping
            (``None``: use frames as stored).
        random_flip: Random horizontal flips in training.
        log_mel: Audio feature settings (its ``sample_rate`` must match the records).
        brightness: Training clips' brightness shift, drawn in ``[-b, b]`` (pixels in
            [0, 1]); 0: off. The authors' earlier code (``sjenni/temporal-ssl``) used 32/255.
        saturation: Training clips' saturation factor, drawn in ``[1 - s, 1 + s]``; 0: off
            (temporal-ssl: 0.5). With ``brightness``, the two go in a random order, as there.
        grayscale: Chance a training clip is made grey (its luma in all three channels);
            temporal-ssl: 0.2.

    The colour draws are made once per clip (per view of a temporal example) and applied
    to all its frames alike, after the crop; evaluation clips are never changed.
    """

    num_frames: int = 8
    frame_stride: int = 1
    crop_size: int = 32
    resize_short_side: int | None = None
    random_flip: bool = True
    log_mel: LogMelSpec = LogMelSpec()
    brightness: float = 0.0
    saturation: float = 0.0
    grayscale: float = 0.0

    def __post_init__(self) -> None:
        for name in ("num_frames", "frame_stride", "crop_size"):
            number_setting(f"data.ClipSpec.{name}", getattr(self, name), integer=True)
        for name in ("brightness", "saturation", "grayscale"):
            value = number_setting(f"data.ClipSpec.{name}", getattr(self, name), zero_allowed=True)
            if value > 1:
                raise ValueError(f"data.ClipSpec.{name} must be in [0, 1], got {value!r}")
        if self.resize_short_side is not None:
            number_setting("data.ClipSpec.resize_short_side", self.resize_short_side, integer=True)

    def window_seconds(self, fps: float) -> float:
        """Duration covered by one clip at ``fps``."""
        return self.num_frames * self.frame_stride / fps

    def audio_shape(self, fps: float) -> tuple[int, int, int]:
        """Shape of the audio input for records stored at ``fps``."""
        samples = int(round(self.window_seconds(fps) * self.log_mel.sample_rate))
        return (self.log_mel.num_frames(samples), self.log_mel.mel_bins, 1)

    def video_shape(self) -> tuple[int, int, int, int]:
        """Shape of the video input."""
        return (self.num_frames, self.crop_size, self.crop_size, 3)


@dataclasses.dataclass(frozen=True)
class Windows:
    """The windows one record can hold (int64 scalars, or one per speed, except ``window``).

    Attributes:
        window: Audio samples of one clip window.
        last_frame: Latest start frame of a video window whose aligned audio window is
            inside the audio (negative when the record is too short).
        max_audio_start: Latest start sample of an audio window.
        latest_start: Sample of ``last_frame`` (at most ``max_audio_start``).
    """

    window: int
    last_frame: tf.Tensor
    max_audio_start: tf.Tensor
    latest_start: tf.Tensor
    needs_audio: bool = True

    def fit(self) -> tf.Tensor:
        """Whether the record holds at least one such window (of video, and of audio)."""
        if not self.needs_audio:
            return self.last_frame >= 0
        return tf.logical_and(self.last_frame >= 0, self.max_audio_start >= 0)


class Clips:
    """Cuts clips from the records of one dataset (its ``fps``) for one ``ClipSpec``.

    Args:
        spec: Clip shape and audio features.
        fps: Frame rate the records were stored at.
        video_only: Cut video clips only: windows ignore the audio (records without sound
            count, as a video tower alone needs) and examples carry no ``audio``.
    """

    def __init__(self, spec: ClipSpec, fps: float, video_only: bool = False) -> None:
        self.spec = spec
        self.fps = float(fps)
        self.sample_rate = spec.log_mel.sample_rate
        self.video_only = video_only

    def windows(self, record: Record, speed: int | tf.Tensor = 1) -> Windows:
        """Sizes (in samples and frames) of the windows ``record`` can hold.

        Args:
            record: A parsed record.
            speed: Playback speed ``s`` (an int64 tensor of several speeds broadcasts):
                the clip then spans ``s`` times the frames and audio samples of a 1x clip.
                ``window`` stays the 1x window; the other fields are per speed.
        """
        spec, rate = self.spec, self.sample_rate
        window = int(round(spec.window_seconds(self.fps) * rate))
        last_frame = record["num_frames"] - spec.num_frames * spec.frame_stride * speed
        max_audio_start = record["num_samples"] - window * speed
        if self.video_only:
            return Windows(
                window,
                last_frame,
                max_audio_start,
                self.frame_to_sample(last_frame),
                needs_audio=False,
            )
        # The latest start frame whose aligned audio window is still inside the audio.
        audio_bound = tf.floor(tf.cast(max_audio_start, tf.float64) * self.fps / rate)
        last_frame = tf.minimum(last_frame, tf.cast(audio_bound, tf.int64))
        latest = tf.minimum(self.frame_to_sample(last_frame), max_audio_start)
        return Windows(window, last_frame, max_audio_start, latest)

    def long_enough(self, record: Record, speed: int = 1) -> tf.Tensor:
        """Whether ``record`` holds at least one clip window (at playback ``speed``)."""
        return self.windows(record, speed).fit()

    def frame_to_sample(self, frame: tf.Tensor) -> tf.Tensor:
        """Audio sample (int64) at which ``frame`` starts."""
        return tf.cast(tf.round(tf.cast(frame, tf.float64) * self.sample_rate / self.fps), tf.int64)

    def random_start(self, record: Record, seed: tf.Tensor) -> tf.Tensor:
        """A start frame drawn uniformly among the record's clip windows."""
        last = self.windows(record).last_frame
        return tf.random.stateless_uniform([], seed, 0, last + 1, dtype=tf.int64)

    def evenly_spaced_start(
        self, record: Record, clip_index: tf.Tensor, num_clips: int | tf.Tensor
    ) -> tf.Tensor:
        """Start frame of clip ``clip_index`` of ``num_clips`` evenly spaced (one: the middle)."""
        last = self.windows(record).last_frame
        denominator = tf.maximum(tf.cast(num_clips, tf.int64) - 1, 1)
        start = (last * tf.cast(clip_index, tf.int64)) // denominator
        return tf.where(tf.cast(num_clips, tf.int64) > 1, start, last // 2)

    def decode(self, record: Record, frame_indices: tf.Tensor) -> tf.Tensor:
        """Decoded frames ``frame_indices`` of ``record``, float32 in [0, 1], as stored."""
        jpegs = tf.gather(record["frames"], frame_indices)
        frames = tf.map_fn(
            lambda x: tf.io.decode_jpeg(x, channels=3),
            jpegs,
            fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
        )
        frames = tf.image.convert_image_dtype(frames, tf.float32)
        if self.spec.resize_short_side:
            shape = tf.cast(tf.shape(frames)[1:3], tf.float32)
            scale = self.spec.resize_short_side / tf.reduce_min(shape)
            size = tf.cast(tf.round(shape * scale), tf.int32)
            frames = tf.image.resize(frames, size, antialias=True)
        return frames

    def frame_indices(self, start_frame: tf.Tensor) -> tf.Tensor:
        """The stored frames of the clip starting at ``start_frame`` (spec's stride)."""
        spec = self.spec
        return start_frame + tf.range(spec.num_frames, dtype=tf.int64) * spec.frame_stride

    def crop(self, frames: tf.Tensor, training: bool, seed: tf.Tensor) -> tf.Tensor:
        """Square crop of the spec's size: random (and flipped) in training, else central."""
        shape = tf.shape(frames)
        size = self.spec.crop_size
        # Frames smaller than the crop are resized up so the crop always fits.
        short = tf.minimum(shape[1], shape[2])
        frames = tf.cond(
            short < size,
            lambda: tf.image.resize(
                frames,
                tf.cast(
                    tf.math.ceil(
                        tf.cast(shape[1:3], tf.float32) * size / tf.cast(short, tf.float32)
                    ),
                    tf.int32,
                ),
            ),
            lambda: frames,
        )
        shape = tf.shape(frames)
        if training:
            seeds = tf.random.experimental.stateless_split(seed, 3)
            top = tf.random.stateless_uniform([], seeds[0], 0, shape[1] - size + 1, tf.int32)
            left = tf.random.stateless_uniform([], seeds[1], 0, shape[2] - size + 1, tf.int32)
        else:
            top, left = (shape[1] - size) // 2, (shape[2] - size) // 2
        frames = frames[:, top : top + size, left : left + size, :]
        if training and self.spec.random_flip:
            flip = tf.random.stateless_uniform([], seeds[2]) < 0.5
            frames = tf.cond(flip, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
        return tf.ensure_shape(frames, (None, size, size, 3))

    @property
    def changes_colors(self) -> bool:
        """Whether training clips get a colour augmentation."""
        spec = self.spec
        return bool(spec.brightness or spec.saturation or spec.grayscale)

    def color(self, frames: tf.Tensor, training: bool, seed: tf.Tensor) -> tf.Tensor:
        """The spec's colour augmentation, one draw for all ``frames`` ([T, H, W, 3], [0, 1]).

        Brightness and saturation in a random order, then greyscale, then a clip to
        [0, 1] (the order of temporal-ssl's ``PreprocessorVideoSSL.color``). Identity
        outside training or with every setting 0.
        """
        if not training or not self.changes_colors:
            return frames
        spec = self.spec
        order_seed, bright_seed, sat_seed, grey_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 4)
        )
        delta = tf.random.stateless_uniform([], bright_seed, -spec.brightness, spec.brightness)
        factor = tf.random.stateless_uniform(
            [], sat_seed, 1.0 - spec.saturation, 1.0 + spec.saturation
        )

        def brighten(x: tf.Tensor) -> tf.Tensor:
            return x + delta if spec.brightness else x

        def saturate(x: tf.Tensor) -> tf.Tensor:
            return tf.image.adjust_saturation(x, factor) if spec.saturation else x

        brightness_first = tf.random.stateless_uniform([], order_seed) < 0.5
        frames = tf.cond(
            brightness_first, lambda: saturate(brighten(frames)), lambda: brighten(saturate(frames))
        )
        if spec.grayscale:
            grey = tf.random.stateless_uniform([], grey_seed) < spec.grayscale
            frames = tf.cond(
                grey,
                lambda: tf.tile(tf.image.rgb_to_grayscale(frames), [1, 1, 1, 3]),
                lambda: frames,
            )
        return tf.clip_by_value(frames, 0.0, 1.0)

    def video(
        self, record: Record, start_frame: tf.Tensor, training: bool, seed: tf.Tensor
    ) -> tf.Tensor:
        """The cropped, in training colour-augmented, clip at ``start_frame``: [T, S, S, 3]."""
        frames = self.crop(self.decode(record, self.frame_indices(start_frame)), training, seed)
        if training and self.changes_colors:
            frames = self.color(frames, training, tf.random.experimental.stateless_fold_in(seed, 7))
        return tf.ensure_shape(frames, self.spec.video_shape())

    def audio(self, record: Record, start_sample: tf.Tensor) -> tf.Tensor:
        """Log-mel of the clip window starting at audio sample ``start_sample``."""
        window = self.windows(record).window
        wave = record["waveform"][start_sample : start_sample + window]
        return log_mel_spectrogram(wave, self.spec.log_mel)

    def aligned(
        self, record: Record, start_frame: tf.Tensor, training: bool, seed: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """The video clip at ``start_frame`` (crop drawn from ``seed``) and its in-sync audio.

        Returns:
            ``video``, ``audio``, ``video_start`` and ``audio_start`` (equal; samples),
            ``video_id`` (int64 hash of the record id) and ``label`` (-1: unlabelled);
            ``video_only`` leaves out ``audio`` and ``audio_start``.
        """
        start = self.frame_to_sample(start_frame)
        example = {"video": self.video(record, start_frame, training, seed)}
        if not self.video_only:
            example.update(audio=self.audio(record, start), audio_start=start)
        return {
            **example,
            "video_start": start,
            "video_id": records.video_id(record),
            "label": record["label_index"],
        }
