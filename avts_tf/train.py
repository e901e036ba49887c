"""The training job behind ``tools/train.py``: everything built from gin, then ``fit``.

``run`` is the gin-configurable root; its settings come in four frozen gin dataclasses
(after TF Model Garden's configs): ``Model`` (towers, task, clip spec: what is trained),
``Trainer`` (optimizer, batch, steps, seed: how it is trained), ``Evaluation`` (the
held-out evaluation) and ``Runtime`` (precision, XLA, checkpoints kept, determinism,
verbosity: how the run behaves). Factories (towers, objective, optimizer) are passed as
callables and called inside the strategy's scope (``distribute.make_strategy``), so their
variables are mirrored. The job trains with Keras ``fit`` and these callbacks:

* ``StepCheckpoint`` in ``<model_dir>/checkpoints``: model, optimizer (step, loss scale)
  and the batch count every ``Trainer.checkpoint_every_steps`` batches. Re-running the same
  command after a crash or ``kill -9`` restores the newest checkpoint and continues
  with the batch the interrupted run would have trained on next (the input pipeline
  skips the batches already consumed), so the result equals an uninterrupted run. A
  task's schedule (a curriculum) is a function of the restored step. A non-finite loss stops
  training with ``avts_tf.errors.TrainingDiverged`` (a ``FloatingPointError``); the last good
  checkpoint stays. A step that runs out of device memory ends in a ``UserError`` naming
  the batch size.
* ``TensorBoard`` in ``<model_dir>/tensorboard``: loss, the task's metrics and logs,
  learning rate, clips/s (``ClipsPerSecond``), once per epoch.
* ``WriteOperativeConfig``: ``<model_dir>/operative_config.gin``.

Before training, the chief writes ``<model_dir>/run.json`` (``avts_tf.run_description``):
clip spec, fps, towers and task, all the evaluation tools need to load the run.

The trainer knows nothing of the task it trains (``avts_tf.tasks.base.Task``): the task
cuts its examples through the reader, computes its loss and metrics and keeps its state.

At the end it saves ``video_tower.keras`` and ``audio_tower.keras``, evaluates the task
on the held-out split, writes ``eval.json`` and returns the metrics. Under
``MultiWorkerMirroredStrategy`` every worker trains and evaluates, but only the chief
writes to ``model_dir``; the others write to a temporary folder that is removed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import gin
import keras
import tensorflow as tf
from absl import logging

from avts_tf import (
    atomic,
    config,
    portable,
    preemption,
    registry_imports,  # noqa: F401  (recipes name the built-in parts)
    run_checks,
)
from avts_tf import callbacks as avts_callbacks
from avts_tf.data import integrity, pipeline, splits
from avts_tf.data.manifest import Manifest
from avts_tf.distribute import make_strategy, worker_role
from avts_tf.errors import RunInterrupted, TrainingDiverged, UserError
from avts_tf.models import AVTSModel
from avts_tf.run_description import RunDescription
from avts_tf.tasks.base import Task

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
    # Evaluation: every worker builds the same deterministic stream and keeps its part of
    # each batch, so the examples scored do not depend on the number of workers.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@gin.configurable(module="train")
@dataclasses.dataclass(frozen=True)
class Model:
    """What is trained: the two towers, the task and the clips they see.

    Attributes:
        video_tower: Factory of the video tower, e.g. ``@backbones.mc3_18``; called with
            ``input_shape`` from ``clip_spec``.
        audio_tower: Factory of the audio tower, e.g. ``@backbones.avts_audio_vgg``.
        objective: Factory of the task (``@objectives.contrastive``, or any
            ``avts_tf.tasks.base.Task``); it cuts its own examples.
        clip_spec: Clip shape and audio features (``None``: gin-configured
            ``data.ClipSpec()``).
    """

    video_tower: Callable[..., keras.Model] = gin.REQUIRED
    audio_tower: Callable[..., keras.Model] = gin.REQUIRED
    objective: Callable[..., Task] = gin.REQUIRED
    clip_spec: pipeline.ClipSpec | None = None


@gin.configurable(module="train")
@dataclasses.dataclass(frozen=True)
class Trainer:
    """How the model is trained: optimizer, batches, steps, seed and intervals.

    Attributes:
        optimizer: Factory of the optimizer (``@keras.optimizers.Adam``, ``SGD``,
            ``AdamW``, ``@optimizers.DecoupledAdamW`` whose decay is a per-step fraction
            as in TF1's AdamW; its ``learning_rate`` may be a schedule such as
            ``@keras.optimizers.schedules.CosineDecay()``).
        batch_size: Global batch size (split across workers, then replicas).
        train_steps: Training batches. Each is one optimizer step, except that under
            ``mixed_float16`` a step whose gradients overflow is skipped (and the loss
            scale lowered).
        steps_per_epoch: Batches between epoch-end logs.
        seed: Seed of weights, the input pipeline and the task's draws.
        checkpoint_every_steps: Checkpoint interval in batches (``None``: each epoch).
        eval_every_steps: Also evaluate on the held-out split during training, at the
            end of the first epoch at or after every this many batches, as TensorBoard
            validation curves (``avts_tf.callbacks.PeriodicEvaluation``); ``None``: only
            at the end.
        train_split: Split to train on.
    """

    optimizer: Callable[..., keras.optimizers.Optimizer] = keras.optimizers.Adam
    batch_size: int = 16
    train_steps: int = 1000
    steps_per_epoch: int = 100
    seed: int = 0
    checkpoint_every_steps: int | None = None
    eval_every_steps: int | None = None
    train_split: str = "train"


@gin.configurable(module="train")
@dataclasses.dataclass(frozen=True)
class Evaluation:
    """How the trained towers are evaluated at the end of ``run``.

    Attributes:
        batch_size: Batch size of evaluation.
        clips_per_video: Evenly spaced clips per held-out video.
        split: Split to evaluate on.
    """

    batch_size: int = 32
    clips_per_video: int = 4
    split: str = "test"


@gin.configurable(module="train")
@dataclasses.dataclass(frozen=True)
class Runtime:
    """How a run behaves, not what it learns.

    Attributes:
        keep_checkpoints: Newest checkpoints kept.
        deterministic: Enable TensorFlow's deterministic ops (for the rest of the
            process), so a resumed run gives the same weights as an uninterrupted one bit
            for bit (slower; needs ``jit_compile=False``).
        verbose: Keras ``fit`` verbosity (``1``: a progress bar); other workers are quiet.
        precision: ``float32``, ``mixed_float16`` (with dynamic loss scaling) or
            ``mixed_bfloat16``. The loss is computed in float32 in every case.
        jit_compile: Compile the train step with XLA (per replica under several replicas).
    """

    keep_checkpoints: int = 2
    deterministic: bool = False
    verbose: int | str = "auto"
    precision: str = "float32"
    jit_compile: bool = False


@dataclasses.dataclass(frozen=True)
class _Job:
    """A run being trained: its settings (the groups) and where it writes.

    Attributes:
        model_dir: The run's folder (checkpoints are restored from it).
        out_dir: Where this worker writes (``model_dir`` on the chief, else scratch).
        is_chief: Whether this worker writes the run's files.
        dataset: The prepared dataset folder.
        model: The towers, task and clip spec (``clip_spec`` resolved).
        trainer: Optimizer, batches, steps, seed, intervals.
        evaluation: The held-out evaluation.
        runtime: Precision, XLA, checkpoints kept, determinism, verbosity.
        callbacks: The caller's extra Keras callbacks.
    """

    model_dir: Path
    out_dir: Path
    is_chief: bool
    dataset: str
    model: Model
    trainer: Trainer
    evaluation: Evaluation
    runtime: Runtime
    callbacks: tuple[keras.callbacks.Callback, ...]


class Results(dict):
    """Evaluation metrics of a run; ``headline`` names the task's main one.

    Attributes:
        headline: Key of the metric ``tools/train.py`` prints last (``Task.headline``).
        preempted_at: The batch a SIGTERM / SIGINT stopped training at (a checkpoint is
            there; no towers, no evaluation), else ``None``.
    """

    def __init__(
        self, metrics: dict[str, float], headline: str, preempted_at: int | None = None
    ) -> None:
        super().__init__(metrics)
        self.headline = headline
        self.preempted_at = preempted_at


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
    model: Model | None = None,
    trainer: Trainer | None = None,
    evaluation: Evaluation | None = None,
    runtime: Runtime | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    overwrite: bool = False,
) -> Results:
    """Trains a task (resuming from ``model_dir`` if it holds checkpoints) and evaluates it.

    Args:
        model_dir: Where checkpoints, TensorBoard logs, towers and ``eval.json`` go. Under
            ``MultiWorkerMirroredStrategy`` every worker must see the chief's
            ``model_dir`` (a shared file system) to resume.
        dataset: A prepared dataset folder (gin: ``@data.synthetic_dataset()`` or
            ``@data.prepared_dataset()``).
        model: Towers, task and clip spec (default: gin-configured ``train.Model()``).
        trainer: Optimizer, batch size, steps, seed, intervals, train split (default:
            gin-configured ``train.Trainer()``).
        evaluation: Final evaluation (default: gin-configured ``train.Evaluation()``).
        runtime: Precision, XLA, checkpoints kept, determinism, verbosity
            (``train.Runtime()``).
        callbacks: Extra Keras callbacks (for example periodic evaluation). A resumed
            run, or one whose ``train_steps`` is not a multiple of ``steps_per_epoch``,
            calls ``fit`` more than once, so they may see several ``on_train_begin``.
        overwrite: Replace a run of another configuration in ``model_dir`` (its outputs
            only) instead of refusing to resume into it.

    Returns:
        Evaluation metrics (as in ``eval.json``); ``.headline`` names the task's main one.

    Raises:
        avts_tf.errors.UserError: A setting is invalid (a count that is not positive, a
            string where a factory belongs, a dataset without records in the train or
            evaluation split, a model_dir that is a file or holds a run of another
            configuration), checked before anything is built or written.
        avts_tf.errors.TrainingDiverged: The loss or the weights became non-finite (a
            ``FloatingPointError``).
        avts_tf.data.splits.OverlappingSplits: ``Trainer.train_split`` and the evaluation
            split share an id or a source file (checked before anything is built).
    """
    model = model or Model()
    trainer = trainer or Trainer()
    evaluation = evaluation or Evaluation()
    runtime = runtime or Runtime()
    if runtime.precision not in PRECISIONS:
        raise UserError(
            f"train.Runtime.precision is {runtime.precision!r}; use one of {', '.join(PRECISIONS)}"
        )
    if runtime.deterministic and runtime.jit_compile:
        raise UserError(
            "train.Runtime.deterministic needs train.Runtime.jit_compile=False "
            "(XLA ops are not all deterministic); turn one of them off"
        )
    run_checks.check_positive("train.Trainer.batch_size", trainer.batch_size)
    run_checks.check_positive("train.Trainer.train_steps", trainer.train_steps, allow_zero=True)
    run_checks.check_positive("train.Trainer.steps_per_epoch", trainer.steps_per_epoch)
    for name in ("checkpoint_every_steps", "eval_every_steps"):
        value = getattr(trainer, name)
        if value is not None:
            run_checks.check_positive(f"train.Trainer.{name}", value)
    run_checks.check_factory("train.Model.video_tower", model.video_tower, "backbones")
    run_checks.check_factory("train.Model.audio_tower", model.audio_tower, "backbones")
    run_checks.check_factory("train.Model.objective", model.objective, "objectives")
    run_checks.check_factory("train.Trainer.optimizer", trainer.optimizer, "keras.optimizers")
    run_checks.check_prepared(dataset)
    splits.check_manifest(dataset, trainer.train_split, evaluation.split)
    run_checks.check_split_records(dataset, trainer.train_split, evaluation.split)
    run_checks.check_model_dir_holds_no_other_files(model_dir, overwrite)
    model = dataclasses.replace(model, clip_spec=model.clip_spec or pipeline.ClipSpec())
    task = run_checks.check_model_builds(
        model.video_tower, model.audio_tower, model.objective, model.clip_spec, dataset
    )
    run_checks.check_clip_windows(
        dataset,
        {"train": trainer.train_split, "evaluation": evaluation.split},
        model.clip_spec,
        multiple=task.window_multiple,
    )
    if runtime.deterministic:
        tf.config.experimental.enable_op_determinism()  # for the rest of the process
    strategy = make_strategy()
    run_checks.check_replica_batch(trainer.batch_size, strategy.num_replicas_in_sync, task)
    role = worker_role(strategy)
    previous_policy = keras.mixed_precision.global_policy()
    with contextlib.ExitStack() as held:
        held.enter_context(run_checks.model_dir_lock(model_dir, is_chief=role.is_chief))
        run_checks.prepare_model_dir(model_dir, overwrite, is_chief=role.is_chief)
        scratch = held.enter_context(tempfile.TemporaryDirectory(prefix="avts_worker_"))
        out_dir = Path(model_dir) if role.is_chief else Path(scratch)
        out_dir.mkdir(parents=True, exist_ok=True)
        job = _Job(
            model_dir=Path(model_dir),
            out_dir=out_dir,
            is_chief=role.is_chief,
            dataset=dataset,
            model=model,
            trainer=trainer,
            evaluation=evaluation,
            runtime=runtime if role.is_chief else dataclasses.replace(runtime, verbose=0),
            callbacks=tuple(callbacks),
        )
        try:
            keras.mixed_precision.set_global_policy(runtime.precision)
            return _train_and_evaluate(strategy, job)
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)


def _build_model(strategy: tf.distribute.Strategy, job: _Job, fps: float) -> AVTSModel:
    spec = job.model.clip_spec
    with strategy.scope():
        video = job.model.video_tower(input_shape=spec.video_shape())
        audio = job.model.audio_tower(input_shape=spec.audio_shape(fps))
        model = AVTSModel(video, audio, job.model.objective())
        opt = job.trainer.optimizer()
        if job.runtime.precision == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        model.compile(optimizer=opt, jit_compile=job.runtime.jit_compile)
        opt.build(model.trainable_variables)
    return model


def _train_input(
    strategy: tf.distribute.Strategy, job: _Job, task: Task, start: int
) -> tf.distribute.DistributedDataset:
    """Per-worker input: each worker reads and decodes only its share of every step.

    ``run_checks.check_replica_batch`` has refused a batch the replicas cannot share.
    """
    trainer = job.trainer

    def worker_batches(context: tf.distribute.InputContext) -> tf.data.Dataset:
        batches = pipeline.train_dataset(
            job.dataset,
            trainer.batch_size,
            task=task,
            spec=job.model.clip_spec,
            split=trainer.train_split,
            seed=trainer.seed,
            skip_batches=start,
            input_context=context,
        )
        # The task saw this worker's whole share; its replicas take consecutive parts.
        return batches.rebatch(context.get_per_replica_batch_size(trainer.batch_size))

    return strategy.distribute_datasets_from_function(worker_batches)


def _train_and_evaluate(strategy: tf.distribute.Strategy, job: _Job) -> Results:
    trainer = job.trainer
    keras.utils.set_random_seed(trainer.seed)
    dataset_manifest = Manifest.read(job.dataset)
    fps = dataset_manifest.fps
    model = _build_model(strategy, job, fps)
    task = model.objective
    if job.is_chief:  # before training, so that a run that crashes is described too
        RunDescription.of_run(
            video_factory=job.model.video_tower,
            audio_factory=job.model.audio_tower,
            task=task,
            clip_spec=job.model.clip_spec,
            fps=fps,
            dataset=job.dataset,
            train_split=trainer.train_split,
            eval_split=job.evaluation.split,
            eval_batch_size=job.evaluation.batch_size,
            eval_clips_per_video=job.evaluation.clips_per_video,
            precision=job.runtime.precision,
            seed=trainer.seed,
            batch_size=trainer.batch_size,
            train_steps=trainer.train_steps,
            ingest=dataclasses.asdict(dataset_manifest.config),
        ).write(job.out_dir)
    restored = avts_callbacks.restore_latest(model, job.model_dir / "checkpoints")
    start = restored.batches if restored else 0
    checkpoint = avts_callbacks.StepCheckpoint(
        job.out_dir / "checkpoints",
        every_batches=trainer.checkpoint_every_steps or trainer.steps_per_epoch,
        total_batches=trainer.train_steps,
        initial_batches=start,
        curriculum_stage=task.stage,
        keep=job.runtime.keep_checkpoints,
    )
    watcher = preemption.PreemptionWatcher()
    stop_on_signal = preemption.StopOnPreemption(watcher, checkpoint, strategy)
    callbacks = [
        checkpoint,
        stop_on_signal,
        avts_callbacks.ClipsPerSecond(trainer.batch_size),
        keras.callbacks.TensorBoard(str(job.out_dir / "tensorboard"), update_freq="epoch"),
        avts_callbacks.WriteOperativeConfig(job.out_dir / "operative_config.gin"),
        *job.callbacks,
    ]
    if trainer.eval_every_steps:
        callbacks.append(
            avts_callbacks.PeriodicEvaluation(
                lambda: _held_out_metrics(model, job),
                trainer.eval_every_steps,
                job.out_dir / "tensorboard",
                initial_batches=start,
            )
        )
    multi_worker = strategy.extended._in_multi_worker_mode()  # noqa: SLF001
    try:
        with watcher:
            _fit(model, strategy, job, task, start, callbacks, checkpoint)
    except tf.errors.ResourceExhaustedError as err:
        raise _out_of_memory(err, job, "training") from None
    except _PEER_ERRORS as err:
        if not multi_worker:
            raise
        raise _lost_worker(err, job.model_dir / "checkpoints") from None
    except tf.errors.DataLossError:
        raise _corrupted(job, trainer.train_split) from None
    if stop_on_signal.preempted_batch is not None:
        batch = stop_on_signal.preempted_batch
        logging.info("preempted at batch %d; re-run the same command to resume", batch)
        return Results({}, headline=task.headline, preempted_at=batch)
    logging.info("Weights digest: %s", avts_callbacks.weights_digest(model))
    if job.is_chief:  # stock Keras layers: loadable without avts_tf (avts_tf.portable)
        portable.save_tower(model.video_tower, job.out_dir / "video_tower.keras")
        portable.save_tower(model.audio_tower, job.out_dir / "audio_tower.keras")
    try:
        return _evaluate(model, job)
    except tf.errors.ResourceExhaustedError as err:
        raise _out_of_memory(err, job, "evaluation") from None


# What a collective raises when a peer worker exits (connection reset: at once) or hangs
# (train.make_strategy.collective_timeout_s).
_PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
)


def _lost_worker(err: Exception, checkpoint_dir: Path) -> RunInterrupted:
    """One line for a collective that failed because a peer worker is gone."""
    text = str(err)
    own = worker_role(make_strategy())
    peers = re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", text)
    others = [
        f"{kind} {index}"
        for kind, index in dict.fromkeys(peers)
        if (kind, int(index)) != (own.task_type, own.task_id)
    ]
    remote = re.search(r"remote target /job:(\w+)/replica:\d+/task:(\d+)", text)
    lost = " ".join(remote.groups()) if remote else (others[0] if others else "a peer")
    cause = re.search(r"aborted by: ([^\n]+)", text)
    if "stopped sending heartbeats" in text:
        reason = "it stopped sending heartbeats"
    else:
        reason = (
            (cause.group(1) if cause else text.splitlines()[0] if text else type(err).__name__)
            .strip()
            .rstrip(":")
        )
    since = avts_callbacks.resume_point(avts_callbacks.read_index(checkpoint_dir))
    return RunInterrupted(
        f"lost worker {lost} ({type(err).__name__}: {reason}); re-run the same command on "
        f"every worker to resume from the last checkpoint ({since})"
    )


def _out_of_memory(err: tf.errors.ResourceExhaustedError, job: _Job, stage: str) -> UserError:
    """One line for a step that ran out of device memory: what, where, which setting."""
    text = str(err)
    tensor = re.search(
        r"OOM when allocating tensor with shape\[([\d,]*)\] and type (\w+) on "
        r"(?:\S*/device:)?(\w+:\d+)",
        text,
    )
    what = (
        f"a {tensor.group(2)} tensor of shape [{tensor.group(1)}] on {tensor.group(3)}"
        if tensor
        else text.strip().splitlines()[0]
        if text.strip()
        else "memory"
    )
    trained = avts_callbacks.read_index(job.model_dir / "checkpoints")
    if stage == "evaluation":  # evaluation settings may change on a resumed run
        return UserError(
            f"out of memory in the held-out evaluation, allocating {what}; lower "
            f"train.Evaluation.batch_size (now {job.evaluation.batch_size}) and re-run the "
            "same command: training is finished, it only evaluates again"
        )
    again = (
        "give a new --model_dir (this one keeps the checkpoints trained so far)"
        if trained
        else "re-run with --overwrite (nothing was trained yet)"
    )
    precision = (
        "train.Runtime.precision='mixed_bfloat16' or " if job.runtime.precision == "float32" else ""
    )
    return UserError(
        f"out of memory in a training step, allocating {what}; lower "
        f"train.Trainer.batch_size (now {job.trainer.batch_size}), use {precision}a smaller "
        f"clip, then {again}"
    )


def _corrupted(job: _Job, split: str) -> RunInterrupted:
    """One line for a corrupted record of ``split``: its shard, offset and the fix."""
    problem = integrity.first_corrupt(job.dataset, split)
    where = f"{problem.file}: {problem.problem}" if problem else f"a shard of split {split!r}"
    since = avts_callbacks.resume_point(avts_callbacks.read_index(job.model_dir / "checkpoints"))
    return RunInterrupted(
        f"corrupted record in {where}; rebuild the bad shards with avts-prepare --verify "
        f"--output {job.dataset}, then re-run the same command to resume from the last "
        f"checkpoint ({since}) (or train past it: data.train_dataset.skip_corrupted=True)"
    )


# TensorFlow 2.21's oneDNN bfloat16 kernels on CPU can return NaN in a few entries of a
# Conv3D weight gradient (not with TF_ENABLE_ONEDNN_OPTS=0, not in float32): see
# docs/temporal.md.
_BFLOAT16_ON_CPU_HINT = (
    " (on CPU, TensorFlow's oneDNN bfloat16 kernels can return NaN gradients: train with "
    "train.Runtime.precision='float32' in a new --model_dir)"
)


def _has_accelerator() -> bool:
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def _fit(
    model: AVTSModel,
    strategy: tf.distribute.Strategy,
    job: _Job,
    task: Task,
    start: int,
    callbacks: list[keras.callbacks.Callback],
    checkpoint: avts_callbacks.StepCheckpoint,
) -> None:
    """Trains from batch ``start`` to the end, one ``fit`` per segment of ``fit_plan``."""
    for segment in fit_plan(start, job.trainer.train_steps, job.trainer.steps_per_epoch):
        model.fit(
            _train_input(strategy, job, task, segment.start),
            initial_epoch=segment.initial_epoch,
            epochs=segment.epochs,
            steps_per_epoch=segment.steps_per_epoch,
            callbacks=callbacks,
            verbose=job.runtime.verbose,
            shuffle=False,
        )
        if checkpoint.nonfinite_batch is not None:
            on_cpu_in_bfloat16 = (
                job.runtime.precision == "mixed_bfloat16" and not _has_accelerator()
            )
            raise TrainingDiverged(
                f"training stopped at batch {checkpoint.nonfinite_batch}: the loss or the "
                f"weights became non-finite (the last good checkpoint is kept in "
                f"{job.model_dir / 'checkpoints'}); lower the learning rate or check the "
                "input data, then re-run the same command to resume from it"
                f"{_BFLOAT16_ON_CPU_HINT if on_cpu_in_bfloat16 else ''}"
            )
        if model.stop_training:  # a signal, or a user callback (early stopping)
            break


def _evaluate(model: AVTSModel, job: _Job) -> Results:
    results = _held_out_metrics(model, job)
    if job.is_chief:
        atomic.write_json(job.out_dir / "eval.json", results)
    logging.info("Evaluation on %r: %s", job.evaluation.split, results)
    if not all(math.isfinite(v) for v in results.values()):
        logging.warning("Some evaluation metrics are not finite: %s", results)
    return Results(results, headline=model.objective.headline)


def _held_out_metrics(model: AVTSModel, job: _Job) -> dict[str, float]:
    """The task's metrics on the held-out split (undefined ones left out)."""
    evaluation = job.evaluation
    eval_data = pipeline.eval_dataset(
        job.dataset,
        evaluation.batch_size,
        task=model.objective,
        spec=job.model.clip_spec,
        split=evaluation.split,
        clips_per_video=evaluation.clips_per_video,
        seed=job.trainer.seed,
    )
    with warnings.catch_warnings():  # Keras warns at the end of any finite dataset.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        results = model.evaluate(_sharded_by_data(eval_data), return_dict=True, verbose=0)
    results = {k: float(v) for k, v in results.items()}
    results.update(model.objective.dataset_metrics(model, eval_data))
    # A metric with nothing to measure (say, a negative kind that no test video can hold)
    # is NaN: leave it out rather than write NaN into eval.json.
    undefined = sorted(k for k, v in results.items() if math.isnan(v) and k != "loss")
    if undefined:
        logging.warning(
            "No examples to score for %s on %r; left out.", ", ".join(undefined), evaluation.split
        )
        results = {k: v for k, v in results.items() if k not in undefined}
    return results


# -- a recipe's towers without training (avts-finetune --init scratch --gin_file) ----------


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A training recipe read for its towers and clip spec, without training.

    Here rather than in ``avts_tf.evaluation``: a recipe binds ``train.Model.*``, which only
    this module registers. ``avts_tf.evaluation.finetune`` takes one as ``Settings.recipe``.

    Attributes:
        gin_files: Training recipes (for example ``gin/quickstart.gin``).
        bindings: Extra gin bindings.
    """

    gin_files: Sequence[str] = ()
    bindings: Sequence[str] = ()

    def towers(self, fps: float) -> tuple[keras.Model, keras.Model, pipeline.ClipSpec]:
        """Randomly initialized towers and clip spec as the recipe would build them.

        Args:
            fps: Frame rate of the data the towers will see (sets the audio input length).

        Raises:
            UserError: If the recipe does not parse or names no towers.
        """
        with self._parsed(f"the recipe {', '.join(self.gin_files)}"):
            spec = self._clip_spec_unlocked()
            towers = []
            for which, shape in (("video", spec.video_shape()), ("audio", spec.audio_shape(fps))):
                reference = _binding(f"train.Model.{which}_tower")
                if reference is None:
                    raise UserError(f"the recipe does not set train.Model.{which}_tower")
                towers.append(reference.scoped_configurable_fn(input_shape=shape))
            return towers[0], towers[1], spec

    def clip_spec(self) -> pipeline.ClipSpec:
        """The recipe's ``ClipSpec`` (``train.Model.clip_spec``); defaults if none.

        Raises:
            UserError: If the recipe or bindings do not parse.
        """
        if not self.gin_files and not self.bindings:
            return pipeline.ClipSpec()
        with self._parsed(", ".join([*self.gin_files, *self.bindings])):
            return self._clip_spec_unlocked()

    @contextlib.contextmanager
    def _parsed(self, what: str) -> Iterator[None]:
        """The recipe parsed into a clean gin config for the block, cleared afterwards.

        Raises:
            UserError: ``cannot parse <what>: <reason>`` if the files or bindings do not parse.
        """
        gin.clear_config()
        try:
            try:
                config.parse_gin(self.gin_files, self.bindings, finalize=False)
            except (OSError, ValueError) as err:
                raise UserError(f"cannot parse {what}: {err}") from None
            yield
        finally:
            gin.clear_config()

    @staticmethod
    def _clip_spec_unlocked() -> pipeline.ClipSpec:
        spec = copy.deepcopy(_binding("train.Model.clip_spec"))  # a ``@fn()`` reference is called
        return spec if isinstance(spec, pipeline.ClipSpec) else pipeline.ClipSpec()


def _binding(name: str):
    try:
        return gin.query_parameter(name)
    except ValueError:
        return None
