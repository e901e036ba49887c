"""Keras callbacks of the training job: step checkpoints, throughput, gin config.

``StepCheckpoint`` replaces ``keras.callbacks.BackupAndRestore``, which restores at
epoch granularity only and writes its file in place (a ``kill -9`` during the write
leaves a broken backup). It saves model and optimizer every ``every_batches`` batches
into a new ``ckpt-<batches>.weights.h5`` (written under a temporary name, then renamed),
then records it in ``checkpoint.json`` (also replaced atomically), so a kill at any
moment leaves the previous checkpoint usable. ``restore_latest`` loads it back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from avts_tf import atomic
from avts_tf.errors import RunInterrupted

INDEX = "checkpoint.json"


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """One saved training state.

    Attributes:
        batches: Training batches consumed (the input pipeline's position).
        step: ``optimizer.iterations`` (differs from ``batches`` when a loss-scaling
            optimizer skipped steps with non-finite gradients).
        curriculum_stage: Stage of the curriculum at ``step``.
        file: File name of the weights, relative to the checkpoint folder.
    """

    batches: int
    step: int
    curriculum_stage: int
    file: str


def read_index(directory: str | os.PathLike) -> list[CheckpointInfo]:
    """Checkpoints recorded in ``directory``, oldest first (empty if none)."""
    path = Path(directory) / INDEX
    if not path.is_file():
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))["checkpoints"]
    return [CheckpointInfo(**entry) for entry in entries]


def resume_point(checkpoints: list[CheckpointInfo]) -> str:
    """Where a re-run resumes, for messages: ``batch N`` of the newest, or ``the start``."""
    return f"batch {checkpoints[-1].batches}" if checkpoints else "the start"


def restore_latest(model: keras.Model, directory: str | os.PathLike) -> CheckpointInfo | None:
    """Loads the newest readable checkpoint of ``directory`` into ``model``.

    The model's optimizer must be built (its variables are part of the checkpoint).
    A checkpoint whose file cannot be read is skipped for the one before it.

    Returns:
        The restored checkpoint, or ``None`` when there is none.
    """
    for info in reversed(read_index(directory)):
        path = Path(directory) / info.file
        try:
            model.load_weights(path)
        except (OSError, ValueError) as error:
            logging.warning("Checkpoint %s unreadable (%s); trying an older one.", path, error)
            continue
        logging.info(
            "Restored %s: batch %d, step %d, curriculum stage %d.",
            path,
            info.batches,
            info.step,
            info.curriculum_stage,
        )
        return info
    return None


def weights_finite(model: keras.Model) -> bool:
    """Whether every weight of ``model`` (optimizer state excluded) is finite."""
    return all(np.all(np.isfinite(keras.ops.convert_to_numpy(w))) for w in model.weights)


def weights_digest(model: keras.Model) -> str:
    """SHA-256 over all model weights' bytes: equal digests mean identical weights."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


class StepCheckpoint(keras.callbacks.Callback):
    """Saves model and optimizer every ``every_batches`` batches; stops on a non-finite loss.

    Before each save it checks that the loss so far and every weight are finite; if not,
    it stops training without saving, so the newest checkpoint is the last good one,
    and sets ``nonfinite_batch``.

    Args:
        directory: Where checkpoints go (a temporary folder on non-chief workers).
        every_batches: Save interval in training batches.
        total_batches: The final batch count; always saved.
        initial_batches: Batches consumed before this run (from the restored checkpoint).
        curriculum_stage: ``step -> stage`` of the objective's curriculum.
        keep: Newest checkpoints kept.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        every_batches: int,
        total_batches: int,
        initial_batches: int = 0,
        curriculum_stage: Callable[[int], int] | None = None,
        keep: int = 2,
    ) -> None:
        super().__init__()
        if every_batches < 1:
            raise ValueError(f"checkpoint interval must be >= 1 batch, got {every_batches}.")
        self.directory = Path(directory)
        self.every_batches = int(every_batches)
        self.total_batches = int(total_batches)
        self.batches = int(initial_batches)
        self.curriculum_stage = curriculum_stage or (lambda step: 0)
        self.keep = int(keep)
        self.nonfinite_batch: int | None = None

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        self.batches += 1
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            self._stop(f"loss {loss}")
            return
        if self.batches % self.every_batches and self.batches != self.total_batches:
            return
        if not weights_finite(self.model):
            self._stop("non-finite weights")
            return
        self.save()

    def _stop(self, what: str) -> None:
        self.nonfinite_batch = self.batches
        self.model.stop_training = True
        logging.error("Batch %d: %s; stopping, last good checkpoint kept.", self.batches, what)

    def save(self) -> CheckpointInfo:
        """Writes a checkpoint of the current state and records it in the index."""
        self.directory.mkdir(parents=True, exist_ok=True)
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        info = CheckpointInfo(
            batches=self.batches,
            step=step,
            curriculum_stage=int(self.curriculum_stage(step)),
            file=f"ckpt-{self.batches:09d}.weights.h5",
        )
        tmp = self.directory / f"tmp-{info.file}"
        previous = read_index(self.directory)
        try:
            self.model.save_weights(tmp)
            os.replace(tmp, self.directory / info.file)
            kept = [c for c in previous if c.batches != info.batches]
            kept = (kept + [info])[-self.keep :]
            index = {"checkpoints": [dataclasses.asdict(c) for c in kept]}
            atomic.write_text(self.directory / INDEX, json.dumps(index, indent=2) + "\n")
        except OSError as err:  # a full disk, a quota, a read-only folder
            tmp.unlink(missing_ok=True)
            if not any(c.file == info.file for c in previous):
                (self.directory / info.file).unlink(missing_ok=True)
            since = resume_point(previous)
            raise RunInterrupted(
                f"could not write checkpoint {self.directory / info.file}: "
                f"{err.strerror or err}; free space or fix the folder, then re-run the same "
                f"command to resume from the last checkpoint ({since})"
            ) from None
        names = {c.file for c in kept}
        for old in self.directory.glob("*ckpt-*.weights.h5"):
            if old.name not in names:
                old.unlink(missing_ok=True)
        return info


class ClipsPerSecond(keras.callbacks.Callback):
    """Adds ``clips_per_second`` (training throughput) to batch and epoch logs.

    The epoch value leaves out each epoch's first batch, which holds tracing and
    compilation on the first epoch and input-pipeline warm-up.

    Args:
        batch_size: Global batch size.
    """

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = int(batch_size)
        self._epoch_start = self._first_end = self._last = 0.0
        self._batches = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        self._epoch_start = self._last = time.perf_counter()
        self._batches = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        now = time.perf_counter()
        self._batches += 1
        if self._batches == 1:
            self._first_end = now
        if logs is not None:
            logs["clips_per_second"] = self.batch_size / max(now - self._last, 1e-9)
        self._last = now

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        if logs is None or not self._batches:
            return
        if self._batches > 1:
            rate = (self._batches - 1) * self.batch_size / max(self._last - self._first_end, 1e-9)
        else:
            rate = self.batch_size / max(self._last - self._epoch_start, 1e-9)
        logs["clips_per_second"] = rate


class WriteOperativeConfig(keras.callbacks.Callback):
    """Writes gin's operative config (every binding actually used) when training starts."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self.path = Path(path)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        atomic.write_text(self.path, gin.operative_config_str())


class PeriodicEvaluation(keras.callbacks.Callback):
    """Held-out evaluation during training, as TensorBoard validation curves.

    Evaluates at the end of the first epoch at or after every ``every_batches`` training
    batches (epochs are ``train.Trainer.steps_per_epoch`` batches) and writes each metric as
    ``epoch_<name>`` to ``<log_dir>/validation`` at the epoch's step, next to the training
    curves of Keras' ``TensorBoard`` callback. Evaluation runs after the epoch's training
    logs are taken, so it changes neither them nor the weights.

    Args:
        evaluate: Returns the held-out metrics (name -> value).
        every_batches: Evaluation interval in training batches.
        log_dir: The run's TensorBoard folder.
        initial_batches: Batches trained before this ``fit`` (a resumed run).
    """

    def __init__(
        self,
        evaluate: Callable[[], dict[str, float]],
        every_batches: int,
        log_dir: str | os.PathLike,
        initial_batches: int = 0,
    ) -> None:
        super().__init__()
        self.evaluate = evaluate
        self.every_batches = int(every_batches)
        self.log_dir = os.path.join(os.fspath(log_dir), "validation")
        self.batches = int(initial_batches)
        self._next = (self.batches // self.every_batches + 1) * self.every_batches
        self._writer = None
        self.history: list[tuple[int, dict[str, float]]] = []

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        self.batches += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        if self.batches < self._next:
            return
        self._next = (self.batches // self.every_batches + 1) * self.every_batches
        results = {k: float(v) for k, v in self.evaluate().items()}
        self.history.append((self.batches, results))
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for name, value in results.items():
                if math.isfinite(value):
                    tf.summary.scalar(f"epoch_{name}", value, step=epoch)
        self._writer.flush()
        logging.info("Held-out evaluation after %d batches: %s", self.batches, results)
