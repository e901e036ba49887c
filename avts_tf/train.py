"""The training job behind ``tools/train.py``: everything built from gin, then ``fit``.

``run`` is the single gin-configurable root. Factories (towers, objective, optimizer) are
passed as callables and called inside the strategy's scope, so their variables are
mirrored. The job trains with Keras ``fit`` and these callbacks:

* ``BackupAndRestore`` in ``<model_dir>/backup``: re-running the same command after a
  crash or ``kill -9`` resumes from the last backup (weights, optimizer, step, and so the
  curriculum stage, which is a function of the step).
* ``TensorBoard`` in ``<model_dir>/tensorboard``: loss, accuracies per negative kind,
  the curriculum mixture, learning rate.
* ``TerminateOnNaN``: a non-finite loss stops training; the last good backup stays.

At the end it saves ``video_tower.keras`` and ``audio_tower.keras``, evaluates sync
accuracy on the held-out split, writes ``eval.json`` and returns the metrics.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gin
import keras
from absl import logging

from avts_tf.data import pipeline
from avts_tf.distribute import make_strategy
from avts_tf.models import AVTSModel
from avts_tf.objectives import ContrastiveSync
from avts_tf.samplers import NegativeSampler

for _optimizer in (keras.optimizers.Adam, keras.optimizers.AdamW, keras.optimizers.SGD):
    gin.external_configurable(_optimizer, module="keras.optimizers")
for _schedule in (
    keras.optimizers.schedules.CosineDecay,
    keras.optimizers.schedules.PiecewiseConstantDecay,
    keras.optimizers.schedules.ExponentialDecay,
):
    gin.external_configurable(_schedule, module="keras.optimizers.schedules")


class _WriteOperativeConfig(keras.callbacks.Callback):
    """Writes gin's operative config once training has started (all bindings are used)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_train_batch_end(self, batch, logs=None):  # noqa: D102
        if not self.path.exists():
            self.path.write_text(gin.operative_config_str(), encoding="utf-8")


def _atomic_write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _check_finite(history: keras.callbacks.History) -> None:
    losses = history.history.get("loss", [])
    if losses and not math.isfinite(losses[-1]):
        raise FloatingPointError(
            "Training stopped: the loss became non-finite. The last good checkpoint is kept "
            "in <model_dir>/backup; lower the learning rate or check the input data."
        )


@gin.configurable(module="train", denylist=["model_dir"])
def run(
    model_dir: str | os.PathLike,
    dataset: str = gin.REQUIRED,
    video_tower: Callable[..., keras.Model] = gin.REQUIRED,
    audio_tower: Callable[..., keras.Model] = gin.REQUIRED,
    objective: Callable[..., keras.layers.Layer] = ContrastiveSync,
    optimizer: Callable[..., keras.optimizers.Optimizer] = keras.optimizers.Adam,
    clip_spec: pipeline.ClipSpec | None = None,
    negatives: Mapping[str, NegativeSampler] | None = None,
    batch_size: int = 16,
    train_steps: int = 1000,
    steps_per_epoch: int = 100,
    eval_batch_size: int = 32,
    eval_clips_per_video: int = 4,
    train_split: str = "train",
    eval_split: str = "test",
    shuffle_audio: bool = False,
    precision: str = "float32",
    jit_compile: bool = False,
    checkpoint_every_steps: int | None = None,
    seed: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
) -> dict[str, float]:
    """Trains AVTS and evaluates sync accuracy on held-out videos.

    Args:
        model_dir: Where checkpoints, TensorBoard logs, towers and ``eval.json`` go.
        dataset: A prepared dataset folder (gin: ``@data.synthetic_dataset()`` or
            ``@data.prepared_dataset()``).
        video_tower: Factory of the video tower, e.g. ``@backbones.mc3_18``; called with
            ``input_shape`` from ``clip_spec``.
        audio_tower: Factory of the audio tower, e.g. ``@backbones.avts_audio_vgg``.
        objective: Factory of the objective (``@objectives.contrastive``, ...).
        optimizer: Factory of the optimizer (``@keras.optimizers.Adam``, ...).
        clip_spec: Clip shape and audio features (default: gin-configured ``ClipSpec()``).
        negatives: Same-video negative samplers the pipeline cuts (``@negative_samplers()``);
            needed when the curriculum asks for hard or super-hard negatives.
        batch_size: Global batch size (split across replicas).
        train_steps: Total optimizer steps.
        steps_per_epoch: Steps between epoch-end logs and backups.
        eval_batch_size: Batch size of evaluation.
        eval_clips_per_video: Evenly spaced clips per held-out video.
        train_split: Split to train on.
        eval_split: Split to evaluate on.
        shuffle_audio: Control run: pair every clip with unrelated audio in training.
        precision: Keras dtype policy: ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.
        jit_compile: Compile the train step with XLA.
        checkpoint_every_steps: Backup interval in steps (``None``: every epoch).
        seed: Seed of the input pipeline and of the negative draws.
        callbacks: Extra Keras callbacks (for example periodic evaluation).
        verbose: Keras ``fit`` verbosity.

    Returns:
        Evaluation metrics; ``sync_accuracy`` uses easy negatives (the paper's protocol).
    """
    clip_spec = clip_spec or pipeline.ClipSpec()
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(precision)
    strategy = make_strategy()
    fps = pipeline.dataset_fps(dataset)
    negatives = dict(negatives or {})
    eval_kinds = ("easy",) + tuple(sorted(negatives))

    with strategy.scope():
        video = video_tower(input_shape=clip_spec.video_shape())
        audio = audio_tower(input_shape=clip_spec.audio_shape(fps))
        model = AVTSModel(video, audio, objective(eval_kinds=eval_kinds))
        opt = optimizer()
        if precision == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        model.compile(optimizer=opt, jit_compile=jit_compile)

    train_data = pipeline.train_dataset(
        dataset, batch_size, spec=clip_spec, split=train_split, negatives=negatives,
        shuffle_audio=shuffle_audio, seed=seed,
    )
    epochs = max(1, math.ceil(train_steps / steps_per_epoch))
    callbacks = [
        keras.callbacks.BackupAndRestore(
            str(model_dir / "backup"),
            save_freq=checkpoint_every_steps or "epoch",
            delete_checkpoint=False,
        ),
        keras.callbacks.TensorBoard(str(model_dir / "tensorboard"), update_freq="epoch"),
        keras.callbacks.TerminateOnNaN(),
        _WriteOperativeConfig(model_dir / "operative_config.gin"),
        *callbacks,
    ]
    history = model.fit(
        train_data, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
        verbose=verbose,
    )
    _check_finite(history)
    video.save(model_dir / "video_tower.keras")
    audio.save(model_dir / "audio_tower.keras")

    eval_data = pipeline.eval_dataset(
        dataset, eval_batch_size, spec=clip_spec, split=eval_split, negatives=negatives,
        clips_per_video=eval_clips_per_video, seed=seed,
    )
    results = model.evaluate(eval_data, return_dict=True, verbose=0)
    results = {k: float(v) for k, v in results.items()}
    _atomic_write_json(model_dir / "eval.json", results)
    logging.info("Evaluation on %r: %s", eval_split, results)
    return results
