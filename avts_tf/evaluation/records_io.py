"""Prepared datasets for evaluation: reading records, preparing raw folders, subsets."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from avts_tf.data import manifest, pipeline, records
from avts_tf.data.ingestion import prepare
from avts_tf.data.manifest import DEFAULTS, IngestConfig, Manifest, Shard, SplitInfo
from avts_tf.errors import UserError


def is_prepared(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``prepare_dataset``."""
    return manifest.exists(path)


def ensure_prepared(
    path: str | Path,
    work_dir: str | Path,
    *,
    layout: str = DEFAULTS.layout,
    fold: int = DEFAULTS.fold,
    sample_rate: int = DEFAULTS.sample_rate,
    fps: float = DEFAULTS.fps,
    short_side: int = DEFAULTS.short_side,
    audio_only: bool = False,
    video_only: bool = False,
    test_fraction: float | None = None,
    workers: int = 1,
) -> Path:
    """``path`` if it is a prepared dataset, else ``path`` prepared into ``work_dir``.

    Args:
        path: A prepared folder, or media (a folder, a CSV or a known layout).
        work_dir: Where to write the prepared copy (re-used when already complete).
        layout: Input layout for ``prepare_dataset`` (``"auto"`` guesses).
        fold: Official split number (UCF101, HMDB51, DCASE).
        sample_rate: Audio rate to store.
        fps: Frame rate to store.
        short_side: Frame short side to store.
        audio_only: Keep files without a video stream (audio evaluation).
        video_only: Keep files without an audio stream (video evaluation: about half of
            UCF101's classes have no sound).
        test_fraction: For a folder, the share of each label's files held out as split
            ``test`` (``None``: none).
        workers: Decoding processes.

    Raises:
        UserError: If ``path`` does not exist or nothing could be prepared.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"dataset {path} does not exist; give a prepared dataset folder or media "
            "(a folder, a CSV or a dataset root)"
        )
    if is_prepared(path):
        return path
    try:
        config = IngestConfig(
            layout=layout,
            fold=fold,
            sample_rate=sample_rate,
            fps=fps,
            short_side=short_side,
            require_video=False if audio_only else None,
            require_audio=not video_only,
            test_fraction=test_fraction,
        )
        prepared = prepare.prepare_dataset(
            path, work_dir, config, workers=workers, options=prepare.RunOptions(progress=True)
        )
    except ValueError as err:
        raise UserError(f"cannot prepare {path}: {err}") from None
    if not prepared.written:
        raise UserError(f"no media file of {path} could be prepared (see {work_dir}/manifest.json)")
    return Path(work_dir)


def splits_of(data_dir: str | Path) -> list[str]:
    """Split names of a prepared dataset that hold records."""
    return Manifest.read(data_dir).split_names


def label_names(data_dir: str | Path) -> list[str]:
    """The dataset's label list (``label_index`` indexes it)."""
    return list(Manifest.read(data_dir).labels)


def sample_rate_of(data_dir: str | Path) -> int:
    """Audio rate the records were stored at."""
    return Manifest.read(data_dir).sample_rate


def count_records(data_dir: str | Path, splits: Sequence[str]) -> int:
    """Records in ``splits`` according to the manifest."""
    return Manifest.read(data_dir).num_records(splits)


def check_splits(data_dir: str | Path, splits: Sequence[str] | None) -> list[str]:
    """``splits`` (default: all) after checking each exists and the set is not empty.

    Raises:
        UserError: If a split is unknown or no split holds a record.
    """
    present = splits_of(data_dir)
    if not present:
        raise UserError(
            f"{data_dir} holds no records (empty set); prepare it from media with avts-prepare"
        )
    chosen = list(splits) if splits else present
    unknown = [s for s in chosen if s not in present]
    if unknown:
        raise UserError(
            f"split(s) {', '.join(unknown)} not in {data_dir}; splits present: {', '.join(present)}"
        )
    return chosen


def parsed_records(data_dir: str | Path, splits: Sequence[str]) -> tf.data.Dataset:
    """Parsed records (``records.parse``) of ``splits``, in shard order."""
    files = [f for split in splits for f in pipeline.shard_files(data_dir, split)]
    return tf.data.TFRecordDataset(files).map(records.parse, num_parallel_calls=tf.data.AUTOTUNE)


def choose_per_class(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``per_class`` items per label (``-1`` skipped), drawn with ``seed``.

    Classes with fewer items give all of them. The same labels and seed always give the
    same choice, so a linear probe and a fine-tuning run can share their few shots.
    """
    rng = np.random.default_rng(seed)
    chosen = [
        rng.permutation(np.flatnonzero(labels == label))[:per_class]
        for label in np.unique(labels[labels >= 0])
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros([0], np.int64)


def few_shot_subset(
    data_dir: str | Path,
    out_dir: str | Path,
    per_class: int,
    split: str = "train",
    seed: int = 0,
) -> Path:
    """A prepared dataset with ``per_class`` labelled files per class of ``split``.

    Files of ``split`` are drawn per class by ``choose_per_class`` and their records (all
    the pieces of a long file) written to one shard; the other splits' shards are linked
    unchanged. The manifest is copied with ``written`` and ``splits`` updated.

    Returns:
        ``out_dir``.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    full = Manifest.read(data_dir)
    serialized, owners, files, labels = [], [], {}, []
    for path in pipeline.shard_files(data_dir, split):
        for raw in tf.data.TFRecordDataset(path):
            record = records.parse(raw)
            file = records.source_name(record).numpy().decode()
            if file not in files:  # the pieces of a long file are one file
                files[file] = len(files)
                labels.append(int(record["label_index"]))
            serialized.append(raw.numpy())
            owners.append(files[file])
    chosen = set(choose_per_class(np.asarray(labels), per_class, seed).tolist())
    keep = [i for i, owner in enumerate(owners) if owner in chosen]
    if not keep:
        raise UserError(
            f"split {split!r} of {data_dir} has no labelled record; prepare it from "
            "class folders or a CSV with labels"
        )
    name = f"{split}-00000-of-00001.tfrecord"
    with tf.io.TFRecordWriter(str(out_dir / name)) as writer:
        for i in keep:
            writer.write(serialized[i])
    kept_ids = {file for file, index in files.items() if index in chosen}
    splits = {split: SplitInfo(len(keep), (Shard(name, len(keep)),))}
    for other, info in full.splits.items():
        if other == split:
            continue
        splits[other] = info
        for shard in info.shards:
            link = out_dir / shard.file
            if not link.exists():
                os.symlink((data_dir / shard.file).resolve(), link)
    written = tuple(e for e in full.written if e.split != split or e.id in kept_ids)
    dataclasses.replace(full, splits=splits, written=written, subset_of=str(data_dir)).write(
        out_dir
    )
    return out_dir
