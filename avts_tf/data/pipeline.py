"""``tf.data`` reader: prepared TFRecord shards -> batches of aligned clips.

Each example of a batch holds a video clip, the audio window aligned to it, the audio
windows of same-video negatives (see ``avts_tf.samplers``), and the explicit start times
of every window in audio samples, so alignment can be checked exactly:

    video             float32 [T, S, S, 3] in [0, 1]
    audio             float32 [frames, mel_bins, 1]   log-mel of the in-sync window
    audio_easy        float32 [frames, mel_bins, 1]   the next example's audio (cut per batch)
    valid_easy        bool  whether the next example is another video
    audio_hard        float32 [frames, mel_bins, 1]   (when the hard sampler is on)
    audio_super_hard  float32 [frames, mel_bins, 1]   (when the super-hard sampler is on)
    valid_hard, valid_super_hard   bool  whether the record could hold that negative
    video_start       int64  first sample of the video window (frame f0 at f0 / fps)
    audio_start, audio_start_easy, audio_start_hard, audio_start_super_hard   int64 window
                      starts (samples; the easy one in the next example's record)
    video_id          int64  hash of the record id (easy negatives skip equal ids)
    label             int64  label index, -1 when unlabelled

Only the JPEGs of the clip's frames are decoded. Records shorter than one clip window
are dropped by the reader; ``count_too_short`` tells how many a split has.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Mapping

import gin
import tensorflow as tf
from absl import logging

from avts_tf.data import records
from avts_tf.data.audio_features import LogMelSpec, log_mel_spectrogram
from avts_tf.samplers import EasyNegativeSampler, NegativeSampler


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
    """

    num_frames: int = 8
    frame_stride: int = 1
    crop_size: int = 32
    resize_short_side: int | None = None
    random_flip: bool = True
    log_mel: LogMelSpec = LogMelSpec()

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


def shard_files(data_dir: str | os.PathLike, split: str) -> list[str]:
    """Sorted shard paths of ``split`` in a prepared dataset folder.

    Raises:
        FileNotFoundError: If the split has no shards; names the splits that exist.
    """
    files = sorted(glob.glob(os.path.join(os.fspath(data_dir), f"{split}-*.tfrecord")))
    if not files:
        present = sorted(
            {os.path.basename(f).split("-")[0] for f in glob.glob(f"{data_dir}/*.tfrecord")}
        )
        raise FileNotFoundError(
            f"No shards for split {split!r} in {data_dir}; splits present: "
            f"{', '.join(present) or 'none'}. Run tools/prepare_data.py first."
        )
    return files


def read_manifest(data_dir: str | os.PathLike) -> dict:
    """The ``manifest.json`` written by ``tools/prepare_data.py``."""
    path = os.path.join(os.fspath(data_dir), "manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: {data_dir} is not a prepared dataset. "
            f"Run tools/prepare_data.py --input ... --output {data_dir}."
        ) from None


def dataset_fps(data_dir: str | os.PathLike) -> float:
    """Frame rate the dataset's records were stored at."""
    return float(read_manifest(data_dir)["config"]["fps"])


def _check_sample_rate(data_dir: str | os.PathLike, spec: ClipSpec) -> float:
    config = read_manifest(data_dir)["config"]
    if int(config["sample_rate"]) != spec.log_mel.sample_rate:
        raise ValueError(
            f"{data_dir} stores audio at {config['sample_rate']} Hz but the log-mel spec "
            f"expects {spec.log_mel.sample_rate} Hz; set LogMelSpec.sample_rate = "
            f"{config['sample_rate']} or re-run prepare_data with --sample_rate."
        )
    return float(config["fps"])


def count_too_short(data_dir: str | os.PathLike, split: str, spec: ClipSpec) -> int:
    """Number of records in ``split`` shorter than one clip window (the reader drops them)."""
    manifest = read_manifest(data_dir)
    window = spec.window_seconds(float(manifest["config"]["fps"]))
    return sum(
        1
        for entry in manifest.get("written", [])
        if entry.get("split") == split and float(entry.get("duration", 0.0)) < window
    )


def _window_layout(record: Mapping[str, tf.Tensor], spec: ClipSpec, fps: float):
    """Sizes (in samples and frames) of the windows a record can hold."""
    rate = spec.log_mel.sample_rate
    window = int(round(spec.window_seconds(fps) * rate))
    span = spec.num_frames * spec.frame_stride
    last_frame = record["num_frames"] - span  # latest start frame of the video window
    max_audio_start = record["num_samples"] - window
    # The latest start frame whose aligned audio window is still inside the audio.
    audio_bound = tf.floor(tf.cast(max_audio_start, tf.float64) * fps / rate)
    last_frame = tf.minimum(last_frame, tf.cast(audio_bound, tf.int64))
    return window, last_frame, max_audio_start


def _frame_to_sample(frame: tf.Tensor, fps: float, rate: int) -> tf.Tensor:
    return tf.cast(tf.round(tf.cast(frame, tf.float64) * rate / fps), tf.int64)


def _decode_frames(record: Mapping[str, tf.Tensor], start_frame: tf.Tensor, spec: ClipSpec):
    indices = start_frame + tf.range(spec.num_frames, dtype=tf.int64) * spec.frame_stride
    jpegs = tf.gather(record["frames"], indices)
    frames = tf.map_fn(
        lambda x: tf.io.decode_jpeg(x, channels=3),
        jpegs,
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )
    frames = tf.image.convert_image_dtype(frames, tf.float32)
    if spec.resize_short_side:
        shape = tf.cast(tf.shape(frames)[1:3], tf.float32)
        scale = spec.resize_short_side / tf.reduce_min(shape)
        size = tf.cast(tf.round(shape * scale), tf.int32)
        frames = tf.image.resize(frames, size, antialias=True)
    return frames


def _crop(frames: tf.Tensor, spec: ClipSpec, training: bool, seed: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(frames)
    size = spec.crop_size
    # Frames smaller than the crop are resized up so the crop always fits.
    short = tf.minimum(shape[1], shape[2])
    frames = tf.cond(
        short < size,
        lambda: tf.image.resize(
            frames,
            tf.cast(
                tf.math.ceil(tf.cast(shape[1:3], tf.float32) * size / tf.cast(short, tf.float32)),
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
    if training and spec.random_flip:
        flip = tf.random.stateless_uniform([], seeds[2]) < 0.5
        frames = tf.cond(flip, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
    return tf.ensure_shape(frames, spec.video_shape())


def _log_mel_window(record, start: tf.Tensor, window: int, spec: ClipSpec) -> tf.Tensor:
    wave = record["waveform"][start : start + window]
    return log_mel_spectrogram(wave, spec.log_mel)


def make_clip_fn(
    spec: ClipSpec,
    fps: float,
    training: bool,
    negatives: Mapping[str, NegativeSampler] | None = None,
):
    """Returns ``fn(record, seed, clip_index, num_clips) -> example`` for ``tf.data.map``.

    Training clips start at a random frame; evaluation clips are ``num_clips`` evenly
    spaced windows, clip ``clip_index`` of them.
    """
    negatives = dict(negatives or {})
    rate = spec.log_mel.sample_rate

    def clip(record, seed, clip_index, num_clips):
        window, last_frame, max_audio_start = _window_layout(record, spec, fps)
        seeds = tf.random.experimental.stateless_split(seed, 2 + len(negatives))
        if training:
            start_frame = tf.random.stateless_uniform(
                [], seeds[0], 0, last_frame + 1, dtype=tf.int64
            )
        else:
            denominator = tf.maximum(tf.cast(num_clips, tf.int64) - 1, 1)
            start_frame = (last_frame * tf.cast(clip_index, tf.int64)) // denominator
            start_frame = tf.where(num_clips > 1, start_frame, last_frame // 2)
        video_start = _frame_to_sample(start_frame, fps, rate)
        frames = _decode_frames(record, start_frame, spec)
        example = {
            "video": _crop(frames, spec, training, seeds[1]),
            "audio": _log_mel_window(record, video_start, window, spec),
            "video_start": video_start,
            "audio_start": video_start,
            "video_id": tf.strings.to_hash_bucket_fast(record["id"], 2**62),
            "label": record["label_index"],
        }
        # Negatives range over the video window's starts, so that their starts can have
        # the positives' distribution (see avts_tf.samplers).
        latest_start = tf.minimum(_frame_to_sample(last_frame, fps, rate), max_audio_start)
        for i, (kind, sampler) in enumerate(sorted(negatives.items())):
            start, valid = sampler.sample(
                video_start, tf.constant(window, tf.int64), latest_start, rate, seeds[2 + i]
            )
            example[f"audio_{kind}"] = _log_mel_window(record, start, window, spec)
            example[f"audio_start_{kind}"] = start
            example[f"valid_{kind}"] = valid
        return example

    return clip


def _long_enough(spec: ClipSpec, fps: float):
    def predicate(record):
        _, last_frame, max_audio_start = _window_layout(record, spec, fps)
        return tf.logical_and(last_frame >= 0, max_audio_start >= 0)

    return predicate


def _records(files: list[str], shuffle_files: bool, seed: int | None) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        dataset = dataset.shuffle(len(files), seed=seed)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 4),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset.map(records.parse, num_parallel_calls=tf.data.AUTOTUNE)


def add_easy_negatives(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Adds each example's easy negative: the audio of the next example of the batch.

    Cut over the whole (global) batch before a strategy splits it, so the pairs are the
    same on any number of replicas. ``valid_easy`` is False where the next example comes
    from the same video.
    """
    batch = dict(batch)
    next_in_batch = EasyNegativeSampler.next_in_batch
    batch["audio_easy"], batch["valid_easy"] = next_in_batch(batch["audio"], batch["video_id"])
    batch["audio_start_easy"], _ = next_in_batch(batch["audio_start"], batch["video_id"])
    return batch


def _swap_audio(example: dict, other: dict) -> dict:
    swapped = dict(example)
    for key, value in other.items():
        if key.startswith("audio"):
            swapped[key] = value
    return swapped


@gin.configurable(module="data")
def train_dataset(
    data_dir: str | os.PathLike,
    batch_size: int,
    spec: ClipSpec | None = None,
    split: str = "train",
    negatives: Mapping[str, NegativeSampler] | None = None,
    shuffle_buffer: int = 256,
    cache_records: bool = True,
    shuffle_audio: bool = False,
    seed: int = 0,
    skip_batches: int = 0,
) -> tf.data.Dataset:
    """Endless batches of random clips for training.

    Args:
        data_dir: Folder written by ``tools/prepare_data.py``.
        batch_size: Examples per batch (per call; the global batch under a strategy).
        spec: Clip shape and audio features (default: gin-configured ``ClipSpec()``).
        split: Split to read.
        negatives: Same-video negative samplers keyed by kind (``"hard"``, ``"super_hard"``).
        shuffle_buffer: Records in the shuffle buffer.
        cache_records: Keep parsed records in memory (small datasets).
        shuffle_audio: Control experiment: replace every example's audio by the audio of
            an unrelated example, so synchronization cannot be learned.
        seed: Seed of file order, shuffling, clip starts, crops and negatives.
        skip_batches: Start after this many batches: yields exactly what the same call
            with ``skip_batches=0`` yields from batch ``skip_batches`` on (resuming a run).
            Skipped examples are not decoded, but the cached records are still shuffled
            through, so the cost grows with the number skipped (microseconds each).

    Returns:
        A dataset of dict batches (see module docstring), ``drop_remainder=True``.
    """
    spec = spec or ClipSpec()
    fps = _check_sample_rate(data_dir, spec)
    files = shard_files(data_dir, split)
    too_short = count_too_short(data_dir, split, spec)
    if too_short:
        logging.warning(
            "%d record(s) of split %r are shorter than one %.2f s clip window and are skipped.",
            too_short,
            split,
            spec.window_seconds(fps),
        )
    records_ds = _records(files, shuffle_files=True, seed=seed)
    records_ds = records_ds.filter(_long_enough(spec, fps))
    if cache_records:
        records_ds = records_ds.cache()
    clip_fn = make_clip_fn(spec, fps, training=True, negatives=negatives)

    def clips(salt: int) -> tf.data.Dataset:
        shuffled = records_ds.repeat().shuffle(shuffle_buffer, seed=seed + salt)
        seeds = tf.data.Dataset.random(seed=seed + salt).batch(2)
        examples = tf.data.Dataset.zip(shuffled, seeds).skip(skip_batches * batch_size)
        return examples.map(
            lambda r, s: clip_fn(r, tf.cast(s, tf.int32), 0, 1),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    dataset = clips(0)
    if shuffle_audio:
        dataset = tf.data.Dataset.zip(dataset, clips(7919)).map(_swap_audio)
    dataset = dataset.batch(batch_size, drop_remainder=True).map(add_easy_negatives)
    return dataset.prefetch(tf.data.AUTOTUNE)


@gin.configurable(module="data")
def eval_dataset(
    data_dir: str | os.PathLike,
    batch_size: int,
    spec: ClipSpec | None = None,
    split: str = "test",
    negatives: Mapping[str, NegativeSampler] | None = None,
    clips_per_video: int = 4,
    seed: int = 0,
) -> tf.data.Dataset:
    """Deterministic evaluation clips: ``clips_per_video`` evenly spaced windows per video.

    Videos are put in a fixed pseudo-random order and clips are ordered clip-major (clip 0
    of every video, then clip 1, ...), so the easy negative of an example (the audio of the
    next example) comes from a random other video.
    The same arguments always give the same batches.
    """
    spec = spec or ClipSpec()
    fps = _check_sample_rate(data_dir, spec)
    files = shard_files(data_dir, split)
    records_ds = _records(files, shuffle_files=False, seed=None)
    # A fixed pseudo-random order of videos, so the easy negative (the next example) is a
    # random other video, as in the paper, not the next file in sorted (often same-class) order.
    records_ds = records_ds.filter(_long_enough(spec, fps)).shuffle(
        100_000, seed=seed, reshuffle_each_iteration=False
    ).cache()
    clip_fn = make_clip_fn(spec, fps, training=False, negatives=negatives)

    def clip_pass(k):
        return records_ds.map(
            lambda r: clip_fn(
                r,
                tf.stack(
                    [
                        tf.cast(k, tf.int32) + seed,
                        tf.cast(tf.strings.to_hash_bucket_fast(r["id"], 2**30), tf.int32),
                    ]
                ),
                k,
                clips_per_video,
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    dataset = tf.data.Dataset.range(clips_per_video).flat_map(clip_pass)
    return dataset.batch(batch_size).map(add_easy_negatives).prefetch(tf.data.AUTOTUNE)
