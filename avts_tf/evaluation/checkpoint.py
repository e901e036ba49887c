"""Towers and clip settings from a ``.keras`` tower file or a training run's ``model_dir``.

A checkpoint is either

* a ``.keras`` tower file (``<model_dir>/video_tower.keras``, any ``keras.Model.save``);
* a ``model_dir`` written by ``avts_tf.train.run``: its ``{video,audio}_tower.keras`` when
  training finished, else the towers rebuilt from ``run.json`` and loaded from the newest
  training checkpoint (``checkpoints/checkpoint.json`` index): a run still training, or
  stopped early.

The run's ``run.json`` (``avts_tf.run_description``, in the ``model_dir`` or next to a
``.keras`` file) gives the ``ClipSpec`` the towers were trained with (log-mel settings,
frame stride, resizing), the dataset, the towers' factories and the task. No gin is read
here: a training recipe's towers come from ``avts_tf.train.Recipe``, which registers the
``train.Model`` bindings a recipe sets.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
from absl import logging

import avts_tf.backbones  # noqa: F401  (registers the towers' custom layers, for loading)
from avts_tf import portable
from avts_tf.backbones import torchvision_import
from avts_tf.data import manifest, pipeline
from avts_tf.errors import UserError
from avts_tf.models import AVTSModel
from avts_tf.run_description import FILENAME as RUN_DESCRIPTION
from avts_tf.run_description import RunDescription

OPERATIVE_CONFIG = "operative_config.gin"
CHECKPOINT_INDEX = Path("checkpoints") / "checkpoint.json"
TOWERS = ("video", "audio")
_INPUT_RANK = {"video": 5, "audio": 4}


def latest_weights(model_dir: str | Path) -> Path | None:
    """The newest full-model weights file of a training run, if any."""
    model_dir = Path(model_dir)
    index = model_dir / CHECKPOINT_INDEX
    if index.is_file():
        try:
            entries = json.loads(index.read_text(encoding="utf-8"))["checkpoints"]
        except (ValueError, KeyError, TypeError):
            entries = []
        for entry in reversed(entries):
            path = index.parent / str(entry.get("file", ""))
            if path.is_file():
                return path
    return None


def run_dir(checkpoint: str | Path) -> Path | None:
    """The training run folder of a checkpoint (the folder, or a ``.keras`` file's), if any.

    Raises:
        UserError: If it is a run folder written before ``run.json`` existed (it holds an
            ``operative_config.gin`` but no ``run.json``).
    """
    path = Path(checkpoint)
    folder = path if path.is_dir() else path.parent
    if RunDescription.exists(folder):
        return folder
    if (folder / OPERATIVE_CONFIG).is_file():
        RunDescription.read(folder)  # raises the error that says how to write it
    return None


def run_description(model_dir: str | Path) -> RunDescription:
    """The ``run.json`` of a training run.

    Raises:
        UserError: If there is none, or it cannot be read.
    """
    return RunDescription.read(model_dir)


def run_clip_spec(model_dir: str | Path) -> pipeline.ClipSpec:
    """The ``ClipSpec`` a training run used (from its ``run.json``)."""
    return run_description(model_dir).clip_spec


def rebuild_run_model(model_dir: str | Path, task: keras.layers.Layer | None = None):
    """The run's ``AVTSModel`` rebuilt from its ``run.json`` and newest checkpoint.

    Args:
        model_dir: The run's folder.
        task: The task to hold (default: the run's, rebuilt from ``run.json``); its
            weights (a head) must be those of the run's task.

    Raises:
        UserError: If the run has no ``run.json`` or checkpoint, or they do not fit.
    """
    model_dir = Path(model_dir)
    description = run_description(model_dir)
    weights = latest_weights(model_dir)
    if weights is None:
        raise UserError(
            f"{model_dir} has no training checkpoint yet; wait for its first "
            "checkpoint (train.Trainer.checkpoint_every_steps) or give a finished run"
        )
    video = description.video_tower.build()
    audio = description.audio_tower.build()
    model = AVTSModel(video, audio, task if task is not None else description.build_task())
    try:
        model.load_weights(weights)
    except (ValueError, OSError) as err:
        raise UserError(f"{weights} does not fit the run's {RUN_DESCRIPTION}: {err}") from None
    return model


def load_task_weights(model: keras.Model, model_dir: str | Path, needs: str) -> None:
    """Loads the task's weights (a head) of the run's newest checkpoint into ``model``.

    The towers of ``model`` keep their weights: when they come from the run's ``.keras``
    files (``load_tower``) they may hold other layer classes than the run trained with
    (``portable.training_tower`` swaps a user's stock ``Conv3D`` for the fast one), which
    the checkpoint does not lay out, and they hold the checkpoint's values already
    (``train.run`` checkpoints its last batch before saving them).

    Args:
        model: An ``AVTSModel`` holding the run's towers and a task built like its own.
        model_dir: The run's folder.
        needs: What needs the weights, the start of the refusal without a checkpoint.

    Raises:
        UserError: If the run has no checkpoint yet, or it does not fit the task.
    """
    weights = latest_weights(model_dir)
    if weights is None:
        raise UserError(
            f"{needs} but {model_dir} has no checkpoint yet; wait for its first "
            "checkpoint (train.Trainer.checkpoint_every_steps)"
        )
    try:
        model.load_weights(weights, objects_to_skip=[model.video_tower, model.audio_tower])
    except (ValueError, OSError) as err:
        raise UserError(
            f"{weights} does not fit the run's task: {err}; give the model_dir "
            "the checkpoint was trained in"
        ) from None


def _load_keras(path: Path, which: str) -> keras.Model:
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as err:  # noqa: BLE001 - any load failure is a bad checkpoint.
        raise UserError(f"cannot load {path}: {type(err).__name__}: {err}") from None
    rank = len(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    if rank != _INPUT_RANK[which]:
        other = {5: "a video", 4: "an audio"}.get(rank, "not a")
        raise UserError(
            f"{path} is {other} tower, expected the {which} tower; give the "
            f"run's {which}_tower.keras or its model_dir"
        )
    return portable.training_tower(model)  # Saved with stock layers; fine-tuned with fast.


def load_tower(checkpoint: str | Path, which: str) -> keras.Model:
    """Loads the ``video`` or ``audio`` tower of a checkpoint (see module docstring).

    Raises:
        UserError: If the checkpoint is missing, unreadable or of the other tower.
    """
    if which not in TOWERS:
        raise UserError(f"unknown tower {which!r}; choose one of {', '.join(TOWERS)}")
    path = Path(checkpoint)
    fix = "give a training run's --model_dir or a .keras tower file"
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist; {fix}")
    if path.is_file():
        if path.suffix != ".keras":
            raise UserError(f"checkpoint {path} is neither a .keras file nor a model_dir; {fix}")
        return _load_keras(path, which)
    saved = path / f"{which}_tower.keras"
    if saved.is_file():
        return _load_keras(saved, which)
    if latest_weights(path) is not None:
        logging.info("No %s yet: rebuilding the towers from the newest checkpoint.", saved.name)
        return getattr(rebuild_run_model(path), f"{which}_tower")
    raise UserError(
        f"{path} holds neither {saved.name} nor a training checkpoint: not a training run's "
        f"model_dir; {fix}"
    )


def clip_spec_for(
    checkpoint: str | Path | None,
    video_tower: keras.Model | None = None,
    audio_tower: keras.Model | None = None,
) -> pipeline.ClipSpec:
    """The ``ClipSpec`` to feed a checkpoint's towers.

    Taken from the run's ``run.json`` when there is one, else the gin defaults; the
    towers' input shapes then set the clip length, crop and mel bins.
    """
    folder = run_dir(checkpoint) if checkpoint is not None else None
    spec = run_clip_spec(folder) if folder else pipeline.ClipSpec()
    if checkpoint is not None and folder is None:
        logging.warning(
            "No %s next to %s: using default log-mel settings (%s).",
            RUN_DESCRIPTION,
            checkpoint,
            spec.log_mel,
        )
    if video_tower is not None:
        frames, height, width = video_tower.inputs[0].shape[1:4]
        if frames is not None:
            spec = dataclasses.replace(spec, num_frames=int(frames))
        if height is not None and height == width:
            spec = dataclasses.replace(spec, crop_size=int(height))
    if audio_tower is not None:
        mels = audio_tower.inputs[0].shape[2]
        if mels is not None and mels != spec.log_mel.mel_bins:
            if folder:
                raise UserError(
                    f"the audio tower takes {mels} mel bins but its run used "
                    f"{spec.log_mel.mel_bins}"
                )
            spec = dataclasses.replace(
                spec, log_mel=dataclasses.replace(spec.log_mel, mel_bins=int(mels))
            )
    return spec


def fresh_copy(model: keras.Model) -> keras.Model:
    """The same architecture with newly initialized weights (a from-scratch baseline)."""
    return keras.models.clone_model(model)


def torchvision_video_tower(arch: str, path: str | Path, spec: pipeline.ClipSpec) -> keras.Model:
    """A video tower from a torchvision checkpoint, for clips of ``spec``.

    Without torchvision's ``fc`` head and with its Kinetics normalisation in front, so
    the tower takes the pipeline's frames in [0, 1]
    (:mod:`avts_tf.backbones.torchvision_import`).

    Raises:
        UserError: If the checkpoint cannot be read or does not fit ``arch``.
    """
    try:
        return torchvision_import.load_torchvision(
            arch, path, spec.video_shape(), include_head=False, normalize=True
        )
    except torchvision_import.TorchvisionImportError as err:
        raise UserError(str(err)) from None


def run_dataset(model_dir: str | Path) -> str:
    """The prepared dataset a training run trained on (from its ``run.json``).

    Raises:
        UserError: If the run has no ``run.json`` or its dataset cannot be found.
    """
    dataset = run_description(model_dir).dataset
    if not manifest.exists(dataset):
        raise UserError(
            f"the dataset of run {model_dir} ({dataset}) is not a prepared dataset; give --data"
        )
    return dataset
