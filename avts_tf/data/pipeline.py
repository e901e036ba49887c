"""The generic ``tf.data`` reader: prepared TFRecord shards -> a task's examples -> batches.

    records (parsed, streamed) -> task.train_example / task.eval_example -> batch
                               -> task.batch_examples -> prefetch

What to cut from each record is decided by an ``ExampleSource`` (every task is one:
``avts_tf.tasks.base.Task``), with the shared decoding of ``avts_tf.data.clips.Clips``; the
default, ``AlignedClips``, cuts an aligned video clip and audio window (``Clips.aligned``):

    video        float32 [T, S, S, 3] in [0, 1]
    audio        float32 [frames, mel_bins, 1]   log-mel of the in-sync window
    video_start, audio_start   int64  first sample of the windows (frame f0 at f0 / fps)
    video_id     int64  hash of the record id
    label        int64  label index, -1 when unlabelled

**Memory is bounded independently of the dataset's size.** Records stream from the
shards: the file order is reshuffled every epoch, ``cycle_length`` shards are read at
once and examples are mixed in a ``shuffle_buffer`` of records (as DMVR does); nothing
is cached unless ``cache_records=True`` (small datasets read many times). Evaluation
re-reads the split once per clip position instead of caching it.

**Per-worker input.** With a ``tf.distribute.InputContext`` of several input pipelines
(``MultiWorkerMirroredStrategy`` through ``distribute_datasets_from_function``), worker
``w`` of ``W`` reads, decodes and batches only its share of each step, ``batch_size / W``
examples: the shards ``w, w + W, ...`` when there are at least ``W`` shards, else
positions ``w`` of every ``W`` consecutive examples of the common record stream. The
batches are deterministic for a given seed and number of workers; they differ between
numbers of workers (one worker reproduces the single-machine run exactly).

Records without one clip window (shorter, audio-only, or without sound where audio is
cut) are dropped; ``count_too_short`` tells how many a split has.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

import gin
import tensorflow as tf
from absl import logging

from avts_tf.data import records
from avts_tf.data.clips import Clips, ClipSpec
from avts_tf.data.manifest import Manifest

__all__ = ["ClipSpec", "count_too_short", "eval_dataset", "shard_files", "train_dataset"]


def shard_files(data_dir: str | os.PathLike, split: str) -> list[str]:
    """Sorted shard paths of ``split`` in a prepared dataset folder.

    Raises:
        FileNotFoundError: If the split has no shards; names the splits that exist.
    """
    data_dir = os.fspath(data_dir)
    files = sorted(tf.io.gfile.glob(os.path.join(data_dir, f"{split}-*.tfrecord")))
    if not files:
        present = sorted(
            {
                os.path.basename(f).split("-")[0]
                for f in tf.io.gfile.glob(os.path.join(data_dir, "*.tfrecord"))
            }
        )
        raise FileNotFoundError(
            f"No shards for split {split!r} in {data_dir}; splits present: "
            f"{', '.join(present) or 'none'}. Run tools/prepare_data.py first."
        )
    return files


def count_too_short(
    data_dir: str | os.PathLike, split: str, spec: ClipSpec, video_only: bool = False
) -> int:
    """Number of records in ``split`` without one clip window (the reader drops them).

    Shorter records, audio-only ones and, unless ``video_only``, videos without sound
    (``Manifest.without_clip_window``, the rule :func:`train_dataset` warns with).
    """
    prepared = Manifest.read(data_dir)
    return sum(
        prepared.without_clip_window(
            split, spec.window_seconds(prepared.fps), needs_audio=not video_only
        ).values()
    )


def _log_skipped(lost: tf.Tensor, expected: tf.Tensor, path: tf.Tensor) -> bool:
    logging.warning(
        "skipped %d of %d records of corrupted shard %s (a corrupted record and everything "
        "after it, on every pass over the data); rebuild it with avts-prepare --verify",
        int(lost),
        int(expected),
        path.numpy().decode(),
    )
    return False


def _read_shard_skipping_corrupted(path: tf.Tensor, expected: tf.Tensor) -> tf.data.Dataset:
    """A shard's records up to its first corrupted one; logs how many were lost.

    TFRecord files cannot be resynchronised after a bad record (its length may be the
    corrupted part), so what follows it in the shard is skipped too. At the end of each
    pass over the shard, the records read are compared with the manifest's count
    ``expected`` and a shortfall is logged as one warning with the count.
    """
    records_read = tf.data.TFRecordDataset(path).ignore_errors().map(lambda r: (r, False))
    end_marker = tf.data.Dataset.from_tensors((tf.constant(b""), True))
    counted = records_read.concatenate(end_marker).scan(
        tf.constant(0, tf.int64), lambda n, item: (n + 1, (n, item[0], item[1]))
    )

    def keep(position: tf.Tensor, record: tf.Tensor, at_end: tf.Tensor) -> tf.Tensor:
        del record
        lost = expected - position

        def warn() -> tf.Tensor:
            return tf.py_function(_log_skipped, [lost, expected, path], tf.bool)

        return tf.cond(at_end & (lost > 0), warn, lambda: tf.logical_not(at_end))

    return counted.filter(keep).map(lambda position, record, at_end: record)


def _records(
    files: list[str],
    shuffle_files: bool,
    seed: int | None,
    cycle_length: int = 4,
    expected_counts: dict[str, int] | None = None,
) -> tf.data.Dataset:
    """Parsed records of ``files``.

    With ``expected_counts`` (records per shard file name), a corrupted record ends its
    shard and the loss is logged instead of stopping.
    """
    if expected_counts is None:
        dataset = tf.data.Dataset.from_tensor_slices(files)
        read_shard = tf.data.TFRecordDataset
    else:
        counts = [expected_counts[os.path.basename(f)] for f in files]
        dataset = tf.data.Dataset.from_tensor_slices((files, tf.constant(counts, tf.int64)))
        read_shard = _read_shard_skipping_corrupted
    if shuffle_files:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        read_shard,
        cycle_length=min(len(files), cycle_length),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset.map(records.parse, num_parallel_calls=tf.data.AUTOTUNE)


def _worker_share(
    files: list[str], batch_size: int, context: tf.distribute.InputContext | None
) -> tuple[list[str], int, Callable[[tf.data.Dataset], tf.data.Dataset]]:
    """Shards, examples per step and example filter of this input pipeline."""
    workers = context.num_input_pipelines if context else 1
    if workers == 1:
        return files, batch_size, lambda dataset: dataset
    if batch_size % workers:
        raise ValueError(
            f"batch_size {batch_size} must be a multiple of the {workers} input pipelines."
        )
    worker = context.input_pipeline_id
    if len(files) >= workers:
        return files[worker::workers], batch_size // workers, lambda dataset: dataset

    def positions(dataset: tf.data.Dataset) -> tf.data.Dataset:
        # Before decoding: the other workers' examples are read, never decoded.
        return (
            dataset.enumerate()
            .filter(lambda i, example: tf.equal(i % workers, worker))
            .map(lambda i, example: example)
        )

    return files, batch_size // workers, positions


Batch = dict[str, tf.Tensor]


class ExampleSource(Protocol):
    """What the reader needs of a task: the examples it cuts from a decoded record.

    The data layer knows no task; ``avts_tf.tasks.base.Task`` satisfies this protocol.
    """

    #: The shortest stretch of a record an example is cut from, in clip windows.
    window_multiple: int

    def train_example(self, clips: Clips, record: Batch, seed: tf.Tensor) -> Batch:
        """One training example from a decoded record (``seed``: [2] int32, stateless)."""

    def eval_example(
        self, clips: Clips, record: Batch, seed: tf.Tensor, clip_index: tf.Tensor, num_clips: int
    ) -> Batch:
        """Evaluation example ``clip_index`` of ``num_clips`` from a decoded record."""

    def batch_examples(self, batch: Batch, training: bool) -> Batch:
        """Adds what needs the whole batch (run on each worker's batch, before replicas)."""


class AlignedClips:
    """The default examples: one aligned video clip and audio window per record.

    A random start in training, evenly spaced clips in evaluation. Tasks inherit these
    defaults (``avts_tf.tasks.base.Task``).
    """

    window_multiple: int = 1

    def train_example(self, clips: Any, record: Batch, seed: tf.Tensor) -> Batch:
        """One training example from a decoded record.

        Args:
            clips: ``avts_tf.data.clips.Clips`` of the dataset (windows, decoding).
            record: A parsed record (``avts_tf.data.records.parse``).
            seed: ``[2]`` int32 stateless seed of this example.
        """
        start_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        return clips.aligned(record, clips.random_start(record, start_seed), True, crop_seed)

    def eval_example(
        self,
        clips: Any,
        record: Batch,
        seed: tf.Tensor,
        clip_index: tf.Tensor,
        num_clips: int,
    ) -> Batch:
        """Evaluation example ``clip_index`` of ``num_clips`` evenly spaced ones."""
        start = clips.evenly_spaced_start(record, clip_index, num_clips)
        return clips.aligned(record, start, False, seed)

    def batch_examples(self, batch: Batch, training: bool) -> Batch:
        """Adds what needs the whole batch (run on each worker's batch, before replicas)."""
        del training
        return batch


def _prepare(
    data_dir: str | os.PathLike, split: str, spec: ClipSpec | None, video_only: bool = False
):
    spec = spec or ClipSpec()
    prepared = Manifest.read(data_dir)
    if not video_only:
        prepared.check_sample_rate(spec.log_mel.sample_rate)
    clips = Clips(spec, prepared.fps, video_only=video_only)
    return spec, prepared, clips, shard_files(data_dir, split)


@gin.configurable(module="data")
def train_dataset(
    data_dir: str | os.PathLike,
    batch_size: int,
    task: ExampleSource | None = None,
    spec: ClipSpec | None = None,
    split: str = "train",
    shuffle_buffer: int = 256,
    cycle_length: int = 4,
    cache_records: bool = False,
    seed: int = 0,
    skip_batches: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    skip_corrupted: bool = False,
    video_only: bool = False,
) -> tf.data.Dataset:
    """Endless batches of the task's training examples.

    Args:
        data_dir: Folder written by ``tools/prepare_data.py``.
        batch_size: Examples per step over all workers (the global batch).
        task: Cuts the examples (default: aligned clips at random starts).
        spec: Clip shape and audio features (default: gin-configured ``ClipSpec()``).
        split: Split to read.
        shuffle_buffer: Records in the shuffle buffer (bounds memory).
        cycle_length: Shards read at once.
        cache_records: Keep parsed records in memory (small datasets only).
        seed: Seed of file order, shuffling and every example's stateless seed.
        skip_batches: Start after this many steps: yields exactly what the same call with
            ``skip_batches=0`` yields from step ``skip_batches`` on (resuming a run).
            Skipped records are read and parsed but not decoded.
        input_context: This worker's place among the input pipelines (see module
            docstring); batches then hold this worker's share.
        skip_corrupted: Train on past a corrupted record instead of stopping (gin:
            ``data.train_dataset.skip_corrupted = True``); the rest of its shard is skipped
            and the number of records lost is logged at each pass over that shard. Off by
            default: a corrupted shard should be rebuilt.
        video_only: Video clips only (a video tower alone): records without sound count
            and examples carry no audio (``clips.Clips``).

    Returns:
        A dataset of dict batches, ``drop_remainder=True``, after ``task.batch_examples``.
    """
    task = task or AlignedClips()
    spec, prepared, clips, files = _prepare(data_dir, split, spec, video_only)
    multiple = task.window_multiple
    window = spec.window_seconds(clips.fps) * multiple
    skipped = prepared.require_clip_windows(
        split, window, needs_audio=not video_only, multiple=multiple
    )
    if skipped:
        logging.warning(
            "%d record(s) of split %r hold no %.2f s clip window (%s) and are skipped.",
            sum(skipped.values()),
            split,
            window,
            ", ".join(f"{count} {cause}" for cause, count in skipped.items()),
        )
    files, share, keep_mine = _worker_share(files, batch_size, input_context)
    expected_counts = None
    if skip_corrupted:
        expected_counts = {
            os.path.basename(shard.file): shard.records for shard in prepared.splits[split].shards
        }
    records_ds = _records(
        files,
        shuffle_files=True,
        seed=seed,
        cycle_length=cycle_length,
        expected_counts=expected_counts,
    )
    records_ds = records_ds.filter(lambda record: clips.long_enough(record, multiple))
    if cache_records:
        records_ds = records_ds.cache()
    shuffled = records_ds.repeat().shuffle(shuffle_buffer, seed=seed)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    examples = keep_mine(tf.data.Dataset.zip(shuffled, seeds)).skip(skip_batches * share)
    examples = examples.map(
        lambda record, s: task.train_example(clips, record, tf.cast(s, tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    batches = examples.batch(share, drop_remainder=True)
    batches = batches.map(lambda batch: task.batch_examples(batch, True))
    return batches.prefetch(tf.data.AUTOTUNE)


@gin.configurable(module="data")
def eval_dataset(
    data_dir: str | os.PathLike,
    batch_size: int,
    task: ExampleSource | None = None,
    spec: ClipSpec | None = None,
    split: str = "test",
    clips_per_video: int = 4,
    shuffle_buffer: int = 256,
    seed: int = 0,
    video_only: bool = False,
) -> tf.data.Dataset:
    """Deterministic evaluation examples: ``clips_per_video`` evenly spaced per video.

    Videos are put in a fixed pseudo-random order (a ``shuffle_buffer`` of records over
    the shards in sorted order: a random permutation for splits of up to that many
    records, a local one beyond, with memory bounded by the buffer) and clips are ordered
    clip-major (clip 0 of every video, then clip 1, ...), so consecutive examples come
    from different videos. The split is read once per clip position; the same arguments
    always give the same batches. ``video_only``: as in :func:`train_dataset`.
    """
    task = task or AlignedClips()
    spec, _, clips, files = _prepare(data_dir, split, spec, video_only)
    records_ds = _records(files, shuffle_files=False, seed=None).filter(
        lambda record: clips.long_enough(record, task.window_multiple)
    )
    records_ds = records_ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=False)

    def clip_pass(k):
        def example(record):
            record_hash = tf.strings.to_hash_bucket_fast(record["id"], 2**30)
            example_seed = tf.stack([tf.cast(k, tf.int32) + seed, tf.cast(record_hash, tf.int32)])
            return task.eval_example(clips, record, example_seed, k, clips_per_video)

        return records_ds.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    dataset = tf.data.Dataset.range(clips_per_video).flat_map(clip_pass)
    dataset = dataset.batch(batch_size).map(lambda batch: task.batch_examples(batch, False))
    return dataset.prefetch(tf.data.AUTOTUNE)
