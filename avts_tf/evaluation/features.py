"""Frozen features of a tower layer, per audio window or per video clip.

Pooling: a layer's output ``(B, ..., C)`` is averaged (``pool="avg"``) or maxed
(``pool="max"``) over every axis between batch and channels (time, frequency, space),
giving ``(B, C)``. The default layer ``"auto"`` is the backbone's pooled features
(the layer named ``avgpool``, before any projection), or the model output when the
tower has no such layer.

Audio: each record's waveform is cut into consecutive windows of the tower's input
length (records shorter than one window are zero-padded to one window), each window
becomes a log-mel spectrogram. Video: ``num_clips`` evenly spaced clips per record,
cut by the training pipeline's clip reader (same resize and centre crop). Features are
kept per window, with the index of their file, so a classifier can average its
predictions per file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from avts_tf.data import pipeline, records
from avts_tf.data.audio_features import LogMelSpec, log_mel_spectrogram
from avts_tf.data.clips import Clips
from avts_tf.data.manifest import Manifest
from avts_tf.errors import UserError
from avts_tf.evaluation import records_io

POOLS = ("avg", "max")
DEFAULT_LAYER = "avgpool"


@dataclasses.dataclass
class Features:
    """Per-window features and per-file metadata.

    Attributes:
        features: ``[num_windows, dim]`` float32.
        file_index: ``[num_windows]`` index of each window's file.
        ids: ``[num_files]`` file ids (the pieces of a file longer than ingestion's
            ``max_record_s`` are one file: their windows are pooled together).
        labels: ``[num_files]`` label indices (``-1``: unlabelled).
        splits: ``[num_files]`` split names.
        label_names: The dataset's label list.
        info: Free-form provenance (tower, layer, pooling, window).
    """

    features: np.ndarray
    file_index: np.ndarray
    ids: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    label_names: list[str]
    info: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def window_labels(self) -> np.ndarray:
        """Label of each window (its file's label)."""
        return self.labels[self.file_index]

    def save(self, path: str | Path) -> None:
        """Writes an ``.npz`` (no pickled objects; ``info`` as ``info_<key>`` strings)."""
        np.savez_compressed(
            path,
            features=self.features,
            file_index=self.file_index,
            ids=np.asarray(self.ids, dtype=str),
            labels=self.labels,
            splits=np.asarray(self.splits, dtype=str),
            label_names=np.asarray(self.label_names, dtype=str),
            **{f"info_{k}": np.asarray(str(v)) for k, v in self.info.items()},
        )

    @classmethod
    def load(cls, path: str | Path) -> Features:
        """Reads a file written by ``save``."""
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read features {path}: {err}") from None
        missing = {"features", "file_index", "ids", "labels", "splits"} - set(data.files)
        if missing:
            raise UserError(f"{path} is not a features file (missing {', '.join(sorted(missing))})")
        return cls(
            features=data["features"],
            file_index=data["file_index"],
            ids=data["ids"],
            labels=data["labels"],
            splits=data["splits"],
            label_names=[str(x) for x in data["label_names"]] if "label_names" in data else [],
            info={k[5:]: str(data[k]) for k in data.files if k.startswith("info_")},
        )


def layer_names(model: keras.Model) -> list[str]:
    """Names of the model's layers, input to output."""
    return [layer.name for layer in model.layers]


def resolve_layer(
    model: keras.Model, layer: str = "auto", also_valid: Sequence[str] = ()
) -> str | None:
    """The layer name to read (``None``: the model output).

    Args:
        model: The tower.
        layer: ``"auto"``, ``"output"`` or a layer name.
        also_valid: Names the caller accepts besides (listed when ``layer`` is unknown).

    Raises:
        UserError: If ``layer`` is not a layer of ``model``; lists the valid names.
    """
    names = layer_names(model)
    if layer == "auto":
        return DEFAULT_LAYER if DEFAULT_LAYER in names else None
    if layer in ("output", names[-1]):
        return None
    if layer not in names:
        valid = ["auto", "output", *also_valid, *names]
        raise UserError(
            f"unknown layer {layer!r} in {model.name}; valid layer names: {', '.join(valid)}"
        )
    return layer


def feature_model(
    model: keras.Model,
    layer: str = "auto",
    pool: str = "avg",
    head: keras.layers.Layer | None = None,
) -> Callable[[tf.Tensor], tf.Tensor]:
    """A function ``inputs -> (B, C)`` features of ``layer``, pooled (see module docstring).

    ``head``, when given, maps the pooled features into another space (a task's projection,
    ``avts_tf.evaluation.shared_space``) and its outputs are L2-normalised, as the task's
    contrastive loss compares them.

    Raises:
        UserError: For an unknown layer or pooling.
    """
    if pool not in POOLS:
        raise UserError(f"unknown pooling {pool!r}; choose one of {', '.join(POOLS)}")
    name = resolve_layer(model, layer)
    output = model.outputs[0] if name is None else model.get_layer(name).output
    if isinstance(output, (list, tuple)):
        output = output[0]
    sub = keras.Model(model.inputs, output)
    reduce = tf.reduce_mean if pool == "avg" else tf.reduce_max

    @tf.function(reduce_retracing=True)
    def features(inputs: tf.Tensor) -> tf.Tensor:
        out = tf.cast(sub(inputs, training=False), tf.float32)
        if len(out.shape) > 2:
            out = reduce(out, axis=list(range(1, len(out.shape) - 1)))
        if head is not None:
            out = tf.math.l2_normalize(tf.cast(head(out, training=False), tf.float32), -1)
        return out

    return features


def feature_info(
    tower: keras.Model, which: str, layer: str, pool: str, head: keras.layers.Layer | None = None
) -> dict[str, str]:
    """Provenance of features (``Features.info``): tower, layer read, pooling, head."""
    info = {"tower": which, "layer": resolve_layer(tower, layer) or "output", "pool": pool}
    if head is not None:
        info["head"] = head.name
    return info


def window_samples(spec: LogMelSpec, frames: int) -> int:
    """Samples whose log-mel spectrogram has exactly ``frames`` frames."""
    return spec.window_samples + (int(frames) - 1) * spec.hop_samples


def audio_windows_fn(
    spec: LogMelSpec, window: int, hop: int | None = None, max_windows: int | None = None
) -> Callable[[dict], tf.Tensor]:
    """``record -> [W, frames, mel_bins, 1]`` log-mels of consecutive audio windows.

    Args:
        spec: Log-mel settings (its rate must be the records' rate).
        window: Window length in samples.
        hop: Window hop in samples (default: ``window``, no overlap).
        max_windows: Keep at most this many windows, evenly spread (``None``: all).
    """
    hop = hop or window

    def windows(record: dict) -> tf.Tensor:
        wave = record["waveform"]
        wave = tf.pad(wave, [[0, tf.maximum(window - tf.shape(wave)[0], 0)]])
        frames = tf.signal.frame(wave, window, hop)
        if max_windows:
            count = tf.shape(frames)[0]
            picks = tf.cast(
                tf.linspace(0.0, tf.cast(count - 1, tf.float32), tf.minimum(count, max_windows)),
                tf.int32,
            )
            frames = tf.gather(frames, picks)
        return log_mel_spectrogram(frames, spec)

    return windows


def video_clips_fn(
    spec: pipeline.ClipSpec, fps: float, num_clips: int
) -> Callable[[dict], tf.Tensor]:
    """``record -> [num_clips, T, S, S, 3]`` evenly spaced, centre-cropped clips."""
    cutter = Clips(spec, fps, video_only=True)

    def clips(record: dict) -> tf.Tensor:
        seed = tf.zeros([2], tf.int32)
        return tf.stack(
            [
                cutter.video(record, cutter.evenly_spaced_start(record, k, num_clips), False, seed)
                for k in range(num_clips)
            ]
        )

    return clips


def has_audio(record: dict) -> tf.Tensor:
    """Whether a record holds audio samples (a video without sound holds none)."""
    return record["num_samples"] > 0


def long_enough_fn(
    spec: pipeline.ClipSpec, fps: float, video_only: bool = False
) -> Callable[[dict], tf.Tensor]:
    """Whether a record holds one clip window of video (and audio; the reader's rule)."""
    return Clips(spec, fps, video_only=video_only).long_enough


def extract(
    data_dir: str | Path,
    windows_fn: Callable[[dict], tf.Tensor],
    embed_fn: Callable[[tf.Tensor], tf.Tensor],
    splits: Sequence[str] | None = None,
    batch_size: int = 32,
    keep_fn: Callable[[dict], tf.Tensor] | None = None,
    progress: bool = True,
    info: dict[str, str] | None = None,
) -> Features:
    """Runs ``embed_fn`` on every window of every record of ``splits``.

    Args:
        data_dir: A prepared dataset.
        windows_fn: ``record -> [W, ...]`` model inputs (graph function).
        embed_fn: ``[B, ...] -> [B, D]`` features.
        splits: Splits to read (default: all).
        batch_size: Windows per ``embed_fn`` call.
        keep_fn: Optional record filter (records failing it are skipped and counted).
        progress: Show a progress bar (on stderr).
        info: Provenance stored with the features.

    Raises:
        UserError: If no record is left (empty set).
    """
    splits = records_io.check_splits(data_dir, splits)
    total = records_io.count_records(data_dir, splits)
    dataset = records_io.parsed_records(data_dir, splits)
    if keep_fn is not None:
        dataset = dataset.filter(keep_fn)
    dataset = dataset.map(
        lambda r: (windows_fn(r), records.source_name(r), r["label_index"], r["split"]),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).prefetch(2)
    bar = keras.utils.Progbar(total, unit_name="file") if progress else None
    ids, labels, split_names, chunks, owners, outputs = [], [], [], [], [], []
    position: dict[str, int] = {}  # file id -> its index (a long file's pieces share one)
    read = 0  # records kept by keep_fn (more than files when a file is in pieces)

    def flush() -> None:
        batch = np.concatenate(chunks)
        chunks.clear()
        for start in range(0, len(batch), batch_size):
            outputs.append(np.asarray(embed_fn(batch[start : start + batch_size])))

    with contextlib.redirect_stdout(sys.stderr):  # Keras' bar writes to stdout.
        for inputs, name, label, split in dataset.as_numpy_iterator():
            read += 1
            name = name.decode()
            if name not in position:
                position[name] = len(ids)
                ids.append(name)
                labels.append(int(label))
                split_names.append(split.decode())
            owners.append(np.full(len(inputs), position[name], np.int64))
            chunks.append(inputs)
            if sum(len(c) for c in chunks) >= batch_size:
                flush()
            if bar is not None:
                bar.update(read)
        if chunks:
            flush()
        if bar is not None and read < total:
            bar.update(total, finalize=True)
    skipped = total - read
    if skipped:
        logging.warning(
            "%d record(s) shorter than one clip or without this modality were skipped.", skipped
        )
    if not ids:
        raise UserError(
            f"no usable record in split(s) {', '.join(splits)} of {data_dir} (empty set); give "
            "media with the modality asked for, each at least one clip long"
        )
    return Features(
        features=np.concatenate(outputs).astype(np.float32),
        file_index=np.concatenate(owners),
        ids=np.asarray(ids),
        labels=np.asarray(labels, np.int64),
        splits=np.asarray(split_names),
        label_names=records_io.label_names(data_dir),
        info=dict(info or {}),
    )


def check_sample_rate(data_dir: str | Path, spec: LogMelSpec) -> None:
    """Raises ``UserError`` unless the records' audio rate is the one ``spec`` expects."""
    rate = records_io.sample_rate_of(data_dir)
    if rate != spec.sample_rate:
        raise UserError(
            f"{data_dir} stores audio at {rate} Hz but the features expect {spec.sample_rate} Hz; "
            f"prepare it again with --sample_rate {spec.sample_rate}"
        )


def tower_features(
    tower: keras.Model,
    which: str,
    data_dir: str | Path,
    spec: pipeline.ClipSpec,
    *,
    layer: str = "auto",
    pool: str = "avg",
    splits: Sequence[str] | None = None,
    batch_size: int = 32,
    num_clips: int = 10,
    window_s: float = 1.0,
    max_windows: int | None = None,
    progress: bool = True,
    head: keras.layers.Layer | None = None,
) -> Features:
    """Features of a ``video`` or ``audio`` tower over a prepared dataset.

    Args:
        tower: The tower.
        which: ``"video"`` (``num_clips`` clips per record) or ``"audio"`` (consecutive
            windows of the tower's input length; ``window_s`` when that length is free).
        data_dir: A prepared dataset.
        spec: Clip and log-mel settings of the tower (``checkpoint.clip_spec_for``).
        layer: Layer to read (``"auto"``: ``avgpool`` or the output).
        pool: ``"avg"`` or ``"max"`` over time and space.
        splits: Splits to read (default: all).
        batch_size: Windows per forward pass.
        num_clips: Video clips per record.
        window_s: Audio window when the tower takes any length.
        max_windows: At most this many audio windows per record.
        progress: Show a progress bar.
        head: Maps the pooled features into another space (see ``feature_model``).
    """
    embed = feature_model(tower, layer, pool, head)
    info = feature_info(tower, which, layer, pool, head)
    if which == "audio":
        check_sample_rate(data_dir, spec.log_mel)
        frames = tower.inputs[0].shape[1]
        window = (
            window_samples(spec.log_mel, frames)
            if frames
            else int(round(window_s * spec.log_mel.sample_rate))
        )
        info["window_samples"] = str(window)
        return extract(  # Files without sound have no audio feature (not a silent one).
            data_dir,
            audio_windows_fn(spec.log_mel, window, max_windows=max_windows),
            embed,
            splits,
            batch_size,
            keep_fn=has_audio,
            progress=progress,
            info=info,
        )
    fps = Manifest.read(data_dir).fps
    if fps <= 0:
        raise UserError(
            f"{data_dir} holds no video frames (audio-only records); give media with video"
        )
    info["num_clips"] = str(num_clips)
    return extract(  # Video clips only: files without sound count.
        data_dir,
        video_clips_fn(spec, fps, num_clips),
        embed,
        splits,
        batch_size,
        keep_fn=long_enough_fn(spec, fps, video_only=True),
        progress=progress,
        info=info,
    )
