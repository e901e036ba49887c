"""The training job behind ``tools/train.py``: everything built from gin, then ``fit``.

``run`` is the single gin-configurable root. Factories (towers, objective, optimizer) are
passed as callables and called inside the strategy's scope (``distribute.make_strategy``),
so their variables are mirrored. The job trains with Keras ``fit`` and these callbacks:

* ``StepCheckpoint`` in ``<model_dir>/checkpoints``: model, optimizer (step, loss scale)
  and the batch count every ``checkpoint_every_steps`` batches. Re-running the same
  command after a crash or ``kill -9`` restores the newest checkpoint and continues
  with the batch the interrupted run would have trained on next (the input pipeline
  skips the batches already consumed), so the result equals an uninterrupted run. The
  curriculum stage is a function of the restored step. A non-finite loss stops
  training with ``FloatingPointError``; the last good checkpoint stays.
* ``TensorBoard`` in ``<model_dir>/tensorboard``: loss, accuracies per negative kind,
  the curriculum mixture, learning rate, clips/s (``ClipsPerSecond``), once per epoch.
* ``WriteOperativeConfig``: ``<model_dir>/operative_config.gin``.

At the end it saves ``video_tower.keras`` and ``audio_tower.keras``, evaluates sync
accuracy on the held-out split, writes ``eval.json`` and returns the metrics. Under
``MultiWorkerMirroredStrategy`` every worker trains and evaluates, but only the chief
writes to ``model_dir``; the others write to a temporary folder that is removed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import gin
import keras
import tensorflow as tf
from absl import logging

from avts_tf import atomic
from avts_tf import callbacks as avts_callbacks
from avts_tf.data import pipeline, splits
from avts_tf.distribute import make_strategy, worker_role
from avts_tf.models import AVTSModel
from avts_tf.objectives import ContrastiveSync
from avts_tf.samplers import NegativeSampler

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

for _optimizer in (keras.optimizers.Adam, keras.optimizers.AdamW, keras.optimizers.SGD):
    gin.external_configurable(_optimizer, module="keras.optimizers")
for _schedule in (
    keras.optimizers.schedules.CosineDecay,
    keras.optimizers.schedules.PiecewiseConstantDecay,
    keras.optimizers.schedules.ExponentialDecay,
):
    gin.external_configurable(_schedule, module="keras.optimizers.schedules")


@dataclasses.dataclass(frozen=True)
class Segment:
    """One ``fit`` call: ``epochs - initial_epoch`` epochs of ``steps_per_epoch`` batches.

    Attributes:
        start: Batches consumed before it (where its input pipeline starts).
        initial_epoch: Keras epoch index of its first epoch.
        epochs: Keras epoch index after its last epoch.
        steps_per_epoch: Batches per epoch.
    """

    start: int
    initial_epoch: int
    epochs: int
    steps_per_epoch: int


def fit_plan(start: int, total: int, steps_per_epoch: int) -> list[Segment]:
    """``fit`` calls that train batches ``start .. total - 1`` on the epoch grid.

    A run resumed mid-epoch first finishes that epoch, then trains whole epochs, then
    a last partial epoch when ``total`` is not a multiple of ``steps_per_epoch``.
    """
    plan = []
    while start < total:
        epoch, offset = divmod(start, steps_per_epoch)
        if offset or total - start < steps_per_epoch:
            count = min(steps_per_epoch - offset, total - start)
            plan.append(Segment(start, epoch, epoch + 1, count))
            start += count
        else:
            whole = (total - start) // steps_per_epoch
            plan.append(Segment(start, epoch, epoch + whole, steps_per_epoch))
            start += whole * steps_per_epoch
    return plan


def _sharded_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    # Every worker builds the same seeded stream and keeps its part of each global batch,
    # so the examples of step s do not depend on the number of workers (file sharding
    # would also fail with fewer shards than workers).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _curriculum_stage(objective: keras.layers.Layer) -> Callable[[int], int]:
    curriculum = getattr(objective, "curriculum", None)
    if curriculum is None:
        return lambda step: 0
    return lambda step: int(curriculum.stage(tf.constant(step, tf.int64)))


@gin.configurable("epochs_to_steps", module="train")
def epochs_to_steps(epochs: float = gin.REQUIRED, steps_per_epoch: int = gin.REQUIRED) -> int:
    """``round(epochs * steps_per_epoch)``: step counts of a recipe written in epochs."""
    if steps_per_epoch <= 0 or epochs < 0:
        raise ValueError(
            f"epochs_to_steps needs epochs >= 0 and steps_per_epoch > 0, got {epochs}, "
            f"{steps_per_epoch}."
        )
    return int(round(epochs * steps_per_epoch))


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
    keep_checkpoints: int = 2,
    deterministic: bool = False,
    seed: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
) -> dict[str, float]:
    """Trains AVTS (resuming from ``model_dir`` if it holds checkpoints) and evaluates it.

    Args:
        model_dir: Where checkpoints, TensorBoard logs, towers and ``eval.json`` go. Under
            ``MultiWorkerMirroredStrategy`` every worker must see the chief's
            ``model_dir`` (a shared file system) to resume.
        dataset: A prepared dataset folder (gin: ``@data.synthetic_dataset()`` or
            ``@data.prepared_dataset()``).
        video_tower: Factory of the video tower, e.g. ``@backbones.mc3_18``; called with
            ``input_shape`` from ``clip_spec``.
        audio_tower: Factory of the audio tower, e.g. ``@backbones.avts_audio_vgg``.
        objective: Factory of the objective (``@objectives.contrastive``, ...).
        optimizer: Factory of the optimizer (``@keras.optimizers.Adam``, ``SGD``, ``AdamW``;
            its ``learning_rate`` may be a schedule such as
            ``@keras.optimizers.schedules.CosineDecay()``).
        clip_spec: Clip shape and audio features (default: gin-configured ``ClipSpec()``).
        negatives: Same-video negative samplers the pipeline cuts (``@negative_samplers()``);
            needed when the curriculum asks for hard or super-hard negatives.
        batch_size: Global batch size (split across replicas and workers).
        train_steps: Training batches. Each is one optimizer step, except that under
            ``mixed_float16`` a step whose gradients overflow is skipped (and the loss
            scale lowered).
        steps_per_epoch: Batches between epoch-end logs.
        eval_batch_size: Batch size of evaluation.
        eval_clips_per_video: Evenly spaced clips per held-out video.
        train_split: Split to train on.
        eval_split: Split to evaluate on.
        shuffle_audio: Control run: pair every clip with unrelated audio in training.
        precision: ``float32``, ``mixed_float16`` (with dynamic loss scaling) or
            ``mixed_bfloat16``. The loss is computed in float32 in every case.
        jit_compile: Compile the train step with XLA (per replica under several replicas).
        checkpoint_every_steps: Checkpoint interval in batches (default: each epoch).
        keep_checkpoints: Newest checkpoints kept.
        deterministic: Enable TensorFlow's deterministic ops (for the rest of the process),
            so a resumed run gives the same weights as an uninterrupted one bit for bit
            (slower; needs ``jit_compile=False``).
        seed: Seed of weights, the input pipeline and the negative draws.
        callbacks: Extra Keras callbacks (for example periodic evaluation). A resumed
            run, or one whose ``train_steps`` is not a multiple of ``steps_per_epoch``,
            calls ``fit`` more than once, so they may see several ``on_train_begin``.
        verbose: Keras ``fit`` verbosity (``1``: a progress bar); other workers are quiet.

    Returns:
        Evaluation metrics; ``sync_accuracy`` uses easy negatives (the paper's protocol).

    Raises:
        FloatingPointError: The loss or the weights became non-finite.
        avts_tf.data.splits.OverlappingSplits: ``train_split`` and ``eval_split`` share an
            id or a source file (checked before anything is built).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if deterministic and jit_compile:
        raise ValueError("deterministic=True needs jit_compile=False (XLA ops are not all "
                         "deterministic).")
    splits.check_manifest(dataset, train_split, eval_split)
    if deterministic:
        tf.config.experimental.enable_op_determinism()  # for the rest of the process
    strategy = make_strategy()
    role = worker_role(strategy)
    previous_policy = keras.mixed_precision.global_policy()
    with tempfile.TemporaryDirectory(prefix="avts_worker_") as scratch:
        out_dir = Path(model_dir) if role.is_chief else Path(scratch)
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            keras.mixed_precision.set_global_policy(precision)
            return _train_and_evaluate(
                strategy=strategy,
                is_chief=role.is_chief,
                model_dir=Path(model_dir),
                out_dir=out_dir,
                dataset=dataset,
                video_tower=video_tower,
                audio_tower=audio_tower,
                objective=objective,
                optimizer=optimizer,
                clip_spec=clip_spec or pipeline.ClipSpec(),
                negatives=dict(negatives or {}),
                batch_size=batch_size,
                train_steps=train_steps,
                steps_per_epoch=steps_per_epoch,
                eval_batch_size=eval_batch_size,
                eval_clips_per_video=eval_clips_per_video,
                train_split=train_split,
                eval_split=eval_split,
                shuffle_audio=shuffle_audio,
                precision=precision,
                jit_compile=jit_compile,
                checkpoint_every=checkpoint_every_steps or steps_per_epoch,
                keep_checkpoints=keep_checkpoints,
                seed=seed,
                extra_callbacks=list(callbacks),
                verbose=verbose if role.is_chief else 0,
            )
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)


def _train_and_evaluate(
    *,
    strategy: tf.distribute.Strategy,
    is_chief: bool,
    model_dir: Path,
    out_dir: Path,
    dataset: str,
    video_tower: Callable[..., keras.Model],
    audio_tower: Callable[..., keras.Model],
    objective: Callable[..., keras.layers.Layer],
    optimizer: Callable[..., keras.optimizers.Optimizer],
    clip_spec: pipeline.ClipSpec,
    negatives: dict[str, NegativeSampler],
    batch_size: int,
    train_steps: int,
    steps_per_epoch: int,
    eval_batch_size: int,
    eval_clips_per_video: int,
    train_split: str,
    eval_split: str,
    shuffle_audio: bool,
    precision: str,
    jit_compile: bool,
    checkpoint_every: int,
    keep_checkpoints: int,
    seed: int,
    extra_callbacks: list[keras.callbacks.Callback],
    verbose: int | str,
) -> dict[str, float]:
    keras.utils.set_random_seed(seed)
    fps = pipeline.dataset_fps(dataset)
    eval_kinds = ("easy",) + tuple(sorted(negatives))
    with strategy.scope():
        video = video_tower(input_shape=clip_spec.video_shape())
        audio = audio_tower(input_shape=clip_spec.audio_shape(fps))
        model = AVTSModel(video, audio, objective(eval_kinds=eval_kinds))
        opt = optimizer()
        if precision == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        model.compile(optimizer=opt, jit_compile=jit_compile)
        opt.build(model.trainable_variables)

    restored = avts_callbacks.restore_latest(model, model_dir / "checkpoints")
    start = restored.batches if restored else 0
    checkpoint = avts_callbacks.StepCheckpoint(
        out_dir / "checkpoints",
        every_batches=checkpoint_every,
        total_batches=train_steps,
        initial_batches=start,
        curriculum_stage=_curriculum_stage(model.objective),
        keep=keep_checkpoints,
    )
    callbacks = [
        checkpoint,
        avts_callbacks.ClipsPerSecond(batch_size),
        keras.callbacks.TensorBoard(str(out_dir / "tensorboard"), update_freq="epoch"),
        avts_callbacks.WriteOperativeConfig(out_dir / "operative_config.gin"),
        *extra_callbacks,
    ]
    for segment in fit_plan(start, train_steps, steps_per_epoch):
        train_data = pipeline.train_dataset(
            dataset, batch_size, spec=clip_spec, split=train_split, negatives=negatives,
            shuffle_audio=shuffle_audio, seed=seed, skip_batches=segment.start,
        )
        model.fit(
            _sharded_by_data(train_data),
            initial_epoch=segment.initial_epoch,
            epochs=segment.epochs,
            steps_per_epoch=segment.steps_per_epoch,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,
        )
        if checkpoint.nonfinite_batch is not None:
            raise FloatingPointError(
                f"Training stopped at batch {checkpoint.nonfinite_batch}: the loss or the "
                f"weights became non-finite. The last good checkpoint is kept in "
                f"{model_dir / 'checkpoints'}; lower the learning rate or check the input "
                "data, then re-run the same command to resume from it."
            )
        if model.stop_training:  # a user callback (early stopping) ended training
            break
    logging.info("Weights digest: %s", avts_callbacks.weights_digest(model))
    if is_chief:
        video.save(out_dir / "video_tower.keras")
        audio.save(out_dir / "audio_tower.keras")

    eval_data = pipeline.eval_dataset(
        dataset, eval_batch_size, spec=clip_spec, split=eval_split, negatives=negatives,
        clips_per_video=eval_clips_per_video, seed=seed,
    )
    results = model.evaluate(_sharded_by_data(eval_data), return_dict=True, verbose=0)
    results = {k: float(v) for k, v in results.items()}
    # A metric with nothing to measure (say, a negative kind that no test video can hold)
    # is NaN: leave it out rather than write NaN into eval.json.
    undefined = sorted(k for k, v in results.items() if math.isnan(v) and k != "loss")
    if undefined:
        logging.warning("No pairs to score for %s on %r; left out.", ", ".join(undefined),
                        eval_split)
        results = {k: v for k, v in results.items() if k not in undefined}
    if is_chief:
        atomic.write_json(out_dir / "eval.json", results)
    logging.info("Evaluation on %r: %s", eval_split, results)
    if not all(math.isfinite(v) for v in results.values()):
        logging.warning("Some evaluation metrics are not finite: %s", results)
    return results
