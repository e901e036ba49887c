"""Towers anyone can load, and the inputs they expect from a media file.

Training builds towers from :mod:`avts_tf.backbones.layers`' fast layers. The saved
``video_tower.keras`` / ``audio_tower.keras`` hold the same functional graph made of stock
Keras layers (``Conv3D``, ``BatchNormalization``) with the same weights and outputs, so

    keras.saving.load_model("runs/quickstart/video_tower.keras", safe_mode=True)

works in a process that never imports avts_tf. :func:`load_towers` also returns a
function that turns any FFmpeg-readable file into the towers' inputs, decoded and cut
exactly as in training (the run's ``run.json`` records the clip spec and the ingestion
settings).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from avts_tf.backbones.layers import (
    FusedBatchNormalization,
    UnfusedZeroPadding2D,
    UnfusedZeroPadding3D,
    VideoConv3D,
)
from avts_tf.data import manifest, records
from avts_tf.data.clips import Clips
from avts_tf.data.ingestion import prepare, sources
from avts_tf.errors import RunInterrupted, UserError
from avts_tf.run_description import RunDescription

#: Fast training layer -> the stock Keras layer with the same weights and outputs.
STOCK_LAYERS: dict[type, type] = {
    VideoConv3D: keras.layers.Conv3D,
    FusedBatchNormalization: keras.layers.BatchNormalization,
    UnfusedZeroPadding2D: keras.layers.ZeroPadding2D,
    UnfusedZeroPadding3D: keras.layers.ZeroPadding3D,
}


#: Stock Keras layer -> the fast training layer (the inverse of :data:`STOCK_LAYERS`).
FAST_LAYERS: dict[type, type] = {stock: fast for fast, stock in STOCK_LAYERS.items()}


def _with_layers(model: keras.Model, classes: dict[type, type]) -> keras.Model:
    """A copy of ``model`` (inner models too) with each layer's class swapped by ``classes``."""

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        return classes.get(type(layer), type(layer)).from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def portable_tower(tower: keras.Model) -> keras.Model:
    """A copy of ``tower`` (or of any model holding towers) made of stock Keras layers only."""
    return _with_layers(tower, STOCK_LAYERS)


def training_tower(tower: keras.Model) -> keras.Model:
    """A copy of a loaded tower with avts_tf's fast training layers, same weights and outputs.

    Towers saved as ``.keras`` hold stock layers; fine-tuning this copy instead runs the
    kernels pretraining ran (fused BatchNorm, frame-folded ``(1, k, k)`` convs, pads that
    grappler does not fuse), which are faster on CPU (``docs/performance.md``).
    """
    return _with_layers(tower, FAST_LAYERS)


def save_tower(tower: keras.Model, path: str | os.PathLike) -> None:
    """Saves :func:`portable_tower` of ``tower`` as ``.keras`` (atomically on local disks)."""
    path = os.fspath(path)
    model = portable_tower(tower)
    if "://" in path:
        model.save(path)
        return
    folder = os.path.dirname(os.path.abspath(path))
    handle, partial = tempfile.mkstemp(prefix=".partial_", suffix=".keras", dir=folder)
    os.close(handle)
    try:
        model.save(partial)
        os.replace(partial, path)
    except OSError as err:  # a full disk, a quota, a read-only folder
        raise RunInterrupted(
            f"could not write {path}: {err.strerror or err}; free space or fix the folder, "
            "then re-run the same command (training is done: it only saves and evaluates)"
        ) from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


@dataclasses.dataclass(frozen=True)
class LoadedTowers:
    """A run's towers and how to feed them.

    Attributes:
        video: The video tower: ``[N, T, S, S, 3]`` floats in [0, 1] -> embeddings.
        audio: The audio tower: ``[N, frames, mel_bins, 1]`` log-mels -> embeddings.
        inputs: ``inputs(path, hop_s=None, num_clips=None)`` -> dict of ``video``,
            ``audio`` (aligned clips of the file, as in training) and ``start_s`` (each
            clip's start in seconds); clips every ``hop_s`` (default: one clip length)
            or ``num_clips`` evenly spaced.
        description: The run's ``run.json`` (:class:`avts_tf.run_description.RunDescription`).
    """

    video: keras.Model
    audio: keras.Model
    inputs: Callable[..., dict[str, np.ndarray]]
    description: Any


def load_towers(run_dir: str | os.PathLike) -> LoadedTowers:
    """Loads a training run's towers and a media-file -> inputs function.

    Args:
        run_dir: A ``model_dir`` written by ``avts-train``.

    Raises:
        UserError: ``run_dir`` holds no towers or no ``run.json``.
    """
    run_dir = Path(run_dir)
    towers = []
    for name in ("video_tower.keras", "audio_tower.keras"):
        if not (run_dir / name).is_file():
            raise UserError(
                f"{run_dir / name} does not exist; give the model_dir of a finished avts-train run"
            )
        towers.append(keras.saving.load_model(run_dir / name, compile=False))
    description = RunDescription.read(run_dir)
    return LoadedTowers(towers[0], towers[1], _inputs_fn(description), description)


def run_ingest_config(description: Any) -> Any:
    """How the run's training media was ingested (a ``manifest.IngestConfig``), if known.

    From ``run.json``; for a run written before it recorded them, from its dataset's
    manifest; ``None`` when neither is there.
    """
    if description.ingest is not None:
        return manifest.IngestConfig.from_dict(description.ingest)
    if manifest.exists(description.dataset):  # a run written before ingest was recorded
        return manifest.Manifest.read(description.dataset).config
    return None


def media_record(
    path: str | os.PathLike, description: Any, start: float | None = None, end: float | None = None
) -> dict[str, tf.Tensor]:
    """A media file decoded as the run's training data was, as a parsed record.

    Args:
        path: Any FFmpeg-readable file.
        description: The run's :class:`~avts_tf.run_description.RunDescription`.
        start: Cut start in seconds (``None``: the file's start).
        end: Cut end in seconds (``None``: the file's end).

    Raises:
        UserError: The file cannot be decoded (the reason in one line), or the run records
            no ingestion settings and its dataset is gone.
    """
    ingest = run_ingest_config(description)
    if ingest is None:
        raise UserError(
            "run.json records no ingestion settings and its dataset "
            f"{description.dataset} is gone; re-train with this avts_tf"
        )
    # The whole file as one record, however long (the tools read every clip of it).
    config = dataclasses.replace(ingest, fps=float(description.fps), max_record_s=None)
    item = sources.SourceItem(os.fspath(path), os.fspath(path), "", "", start, end)
    entry, serialized = prepare.process_item(item, -1, config)  # ingestion's own path
    if serialized is None:
        raise UserError(f"{path}: {_tool_reason(entry['reason'])}")
    return records.parse(tf.constant(serialized))


def _tool_reason(reason: str) -> str:
    """An ingestion skip reason, with the fix a tool's user can apply.

    Ingestion's fix for a file lacking a stream is a ``prepare_data`` flag
    (``--allow_missing_audio``), which the tools reading one file with the towers do not have.
    """
    problem, _, fix = reason.partition(" (")
    if "--allow_missing" in fix:
        return f"{problem}; the towers need its video and audio: give a file with both"
    return reason


def _inputs_fn(description: Any) -> Callable[..., dict[str, np.ndarray]]:
    cutter = Clips(description.clip_spec, description.fps)

    def inputs(
        path: str | os.PathLike, hop_s: float | None = None, num_clips: int | None = None
    ) -> dict[str, np.ndarray]:
        record = media_record(path, description)
        if not bool(cutter.long_enough(record)):
            raise UserError(
                f"{path} is shorter than one clip "
                f"({description.clip_spec.window_seconds(description.fps):.2f} s); "
                "give a longer file"
            )
        last = int(cutter.windows(record).last_frame)
        if num_clips:
            starts = [
                int(cutter.evenly_spaced_start(record, k, num_clips)) for k in range(num_clips)
            ]
        else:
            step = max(
                1,
                round(
                    (hop_s or description.clip_spec.window_seconds(description.fps))
                    * description.fps
                ),
            )
            starts = list(range(0, last + 1, step))
        seed = tf.zeros([2], tf.int32)
        video = [cutter.video(record, tf.constant(s, tf.int64), False, seed) for s in starts]
        audio = [
            cutter.audio(record, cutter.frame_to_sample(tf.constant(s, tf.int64))) for s in starts
        ]
        return {
            "video": np.stack(video),
            "audio": np.stack(audio),
            "start_s": np.asarray(starts, np.float64) / description.fps,
        }

    return inputs
