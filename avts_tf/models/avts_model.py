"""``AVTSModel``: a video tower, an audio tower and a task (``avts_tf.tasks.base.Task``)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from absl import logging

# Every built-in tower layer and task, so ``keras.models.load_model`` of a saved model needs
# no other import (a user's own layers or task still need their module imported).
from avts_tf import registry_imports  # noqa: F401
from avts_tf.tasks.base import Task, global_batch_size, local_batch_size, unpack_compute


@keras.saving.register_keras_serializable(package="avts_tf")
class AVTSModel(keras.Model):
    """Two towers trained by a pluggable objective with a custom ``train_step``.

    Works with plain ``compile(optimizer=...)`` and ``fit(dataset)`` on batches from
    ``avts_tf.data.pipeline``; no gin needed. Under ``tf.distribute`` strategies the
    objective divides the loss by the global batch, so gradients do not depend on the
    number of replicas. With a ``LossScaleOptimizer`` (``mixed_float16``) the loss is
    scaled before differentiation and gradients are unscaled by the optimizer.

    With several replicas the towers' non-trainable state (BatchNorm moving statistics,
    which Keras 3 keeps per replica) is averaged over replicas after every step, so all
    replicas and workers hold the same weights, as ``tf.keras`` did with ``ON_READ``
    statistics. Under loss scaling the decision to skip a step whose gradients overflowed
    is taken over all replicas, and a skipped step also leaves the BatchNorm state alone.

    A task's own state (``Task.add_state``, for example a feature queue) is updated after
    each optimizer step by ``Task.after_step`` from the values its ``compute`` returned,
    gathered over all replicas, so every replica holds the same state.

    Args:
        video_tower: Functional model, input ``video`` ``(T, H, W, 3)``, output ``(B, D)``.
        audio_tower: Functional model, input ``audio`` ``(frames, mels, 1)``, output ``(B, D)``.
        objective: The task, for example ``ContrastiveSync()`` (AVTS synchronization) or
            ``TemporalContrastive()``.
        **kwargs: Passed to ``keras.Model``.

    Example:
        >>> model = AVTSModel(video_tower, audio_tower, ContrastiveSync(margin=1.0))
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> model.fit(train_batches, steps_per_epoch=100, epochs=3)
    """

    def __init__(
        self,
        video_tower: keras.Model,
        audio_tower: keras.Model,
        objective: Task,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.video_tower = video_tower
        self.audio_tower = audio_tower
        self.objective = objective
        self.objective.build_head(
            int(video_tower.outputs[0].shape[-1]), int(audio_tower.outputs[0].shape[-1])
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        # The towers are built functional models and the head is built above.
        self.built = True

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        """Embeddings of ``inputs["video"]`` and ``inputs["audio"]`` (either may be absent)."""
        outputs = {}
        if "video" in inputs:
            outputs["video_embedding"] = self.video_tower(inputs["video"], training=training)
        if "audio" in inputs:
            outputs["audio_embedding"] = self.audio_tower(inputs["audio"], training=training)
        return outputs

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """Every metric, so Keras resets them all at each epoch."""
        return (
            [self.loss_tracker]
            + self.objective.reported_metrics(training=True)
            + [
                m
                for m in self.objective.reported_metrics(training=False)
                if m not in self.objective.reported_metrics(training=True)
            ]
        )

    @staticmethod
    def _features(data: Any) -> dict[str, tf.Tensor]:
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return x

    def _results(self, training: bool, logs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        results = {self.loss_tracker.name: self.loss_tracker.result()}
        metrics = self.objective.reported_metrics(training=training)
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            results.update(_global_results(metrics))
        else:
            results.update({metric.name: metric.result() for metric in metrics})
        results.update(logs)
        if _multi_worker(self.distribute_strategy):
            # Keras 3.15 averages logs over workers with ``reduce(MEAN, axis=0)``, which
            # fails on scalars (tensorflow/tensorflow#72388): give it vectors of one.
            results = {k: tf.reshape(tf.cast(v, tf.float32), [1]) for k, v in results.items()}
        return results

    def _track_loss(self, loss: tf.Tensor) -> None:
        # ``loss`` is this replica's share of the global mean: sum the shares, so every
        # replica and worker logs the same global loss (and stops on NaN at the same step).
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            loss = tf.distribute.get_replica_context().all_reduce("sum", loss)
        self.loss_tracker.update_state(loss)

    def compile(self, *args: Any, jit_compile: bool | str = "auto", **kwargs: Any) -> None:
        """``keras.Model.compile``; ``jit_compile=True`` also works with several replicas.

        Keras compiles the whole distributed step with XLA, which fails when the step
        spans several devices (``MirroredStrategy``) or holds collectives. With more than
        one replica in sync, ``jit_compile=True`` instead compiles each replica's forward
        and backward pass with XLA (``replica_jit_compile``); the all-reduces and the
        optimizer update run outside it. A task whose loss gathers over replicas
        (``Task.gathers_over_replicas``) then runs without XLA, with a warning.
        """
        replicas = self.distribute_strategy.num_replicas_in_sync
        self.replica_jit_compile = jit_compile is True and replicas > 1
        if self.replica_jit_compile:
            jit_compile = False
            if self.objective.gathers_over_replicas:
                # Its loss holds collectives, which XLA cannot compile inside a replica.
                self.replica_jit_compile = False
                logging.warning(
                    "jit_compile=True: the task %r gathers features over the %d replicas "
                    "inside its loss, so its train step runs without XLA.",
                    self.objective.name,
                    replicas,
                )
        requested = jit_compile
        super().compile(*args, jit_compile=jit_compile, **kwargs)
        self._compile_config.config["jit_compile"] = requested  # what a reload asks for
        self._replica_step_fn = None

    def compile_from_config(self, config: dict) -> None:
        """Compiles a loaded model as it was saved (``keras.models.load_model``).

        Keras skips this for a model whose ``compile`` is its own, so without this override a
        loaded model would have no optimizer (and its saved optimizer state would be
        dropped) until compiled again.
        """
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:  # the optimizer's variables, for the saved state to load into
            self.optimizer.build(self.trainable_variables)

    def _loss_and_gradients(
        self, batch: dict[str, tf.Tensor], global_batch: tf.Tensor, stateless: bool
    ) -> tuple[tf.Tensor, dict, list[tf.Tensor], list[tf.Tensor], dict]:
        """Loss, logs, gradients, new non-trainable tower state and the task's values.

        With ``stateless`` the towers run through ``stateless_call`` and their new state
        (BatchNorm statistics) is returned instead of assigned. Such a function can be
        compiled with XLA inside a replica, and the caller can average the state and
        decide whether to keep it.
        """
        step = self.optimizer.iterations
        towers = _StatelessTowers(self) if stateless else self
        with tf.GradientTape() as tape:
            loss, logs, values = unpack_compute(
                self.objective.compute(
                    towers, batch, training=True, step=step, global_batch=global_batch
                )
            )
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, self.trainable_variables)
        state = towers.new_state() if stateless else []
        return loss, logs, gradients, state, values

    def _stateless_step(
        self, batch: dict[str, tf.Tensor], global_batch: tf.Tensor
    ) -> tuple[tf.Tensor, dict, list[tf.Tensor], list[tf.Tensor], dict]:
        """``_loss_and_gradients(stateless=True)``, with XLA when asked per replica."""
        if getattr(self, "replica_jit_compile", False):
            if self._replica_step_fn is None:
                self._replica_step_fn = tf.function(
                    lambda b, n: self._loss_and_gradients(b, n, stateless=True),
                    jit_compile=True,
                )
            return self._replica_step_fn(batch, global_batch)
        return self._loss_and_gradients(batch, global_batch, stateless=True)

    def _assign_tower_state(self, state: list[tf.Tensor], keep: tf.Tensor | None) -> None:
        """Assigns the towers' new state, averaged over replicas; unchanged unless ``keep``."""
        variables = _tower_state(self)
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            floating = [i for i, v in enumerate(state) if v.dtype.is_floating]
            if floating:
                context = tf.distribute.get_replica_context()
                averaged = context.all_reduce("mean", [state[i] for i in floating])
                for i, value in zip(floating, averaged, strict=True):
                    state[i] = value
        for variable, value in zip(variables, state, strict=True):
            if keep is not None:
                value = tf.where(keep, value, tf.convert_to_tensor(variable))
            variable.assign(value)

    def _after_step(self, values: dict[str, tf.Tensor], applied: tf.Tensor | None) -> None:
        """Runs the task's post-step hook with ``values`` gathered over all replicas."""
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            context = tf.distribute.get_replica_context()
            values = {k: context.all_gather(v, axis=0) for k, v in values.items()}
        self.objective.after_step(values, tf.constant(True) if applied is None else applied)

    @staticmethod
    def _finite_everywhere(gradients: list[tf.Tensor | None]) -> tf.Tensor:
        """Whether every replica's gradients are finite (one decision for all replicas).

        Keras' ``LossScaleOptimizer`` looks at replica 0's gradients only: if another
        replica alone overflowed, the all-reduced update would write inf into the weights.
        """
        local = tf.reduce_all(
            [tf.reduce_all(tf.math.is_finite(g)) for g in gradients if g is not None]
        )
        if tf.distribute.get_strategy().num_replicas_in_sync == 1:
            return local
        context = tf.distribute.get_replica_context()
        overflowed = context.all_reduce("sum", tf.cast(tf.logical_not(local), tf.float32))
        return tf.equal(overflowed, 0.0)

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        # Keras 3.15 builds a model created under a strategy by averaging the first
        # distributed batch over replicas, which fails on the pipeline's bool features.
        # The towers are built already; only the optimizer needs its variables.
        del iterator, data_batch
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:  # noqa: D102
        batch = self._features(data)
        global_batch = global_batch_size(batch)
        several = tf.distribute.get_strategy().num_replicas_in_sync > 1
        loss_scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        finite = None
        if several or loss_scaled:
            loss, logs, gradients, state, values = self._stateless_step(batch, global_batch)
            finite = self._finite_everywhere(gradients) if loss_scaled else None
            # A skipped step (overflow under loss scaling) leaves BatchNorm state as it was.
            self._assign_tower_state(state, keep=finite)
            if finite is not None:
                # Every replica now skips, or none: the optimizer sees non-finite gradients
                # on all replicas as soon as one overflowed.
                poison = tf.where(finite, 0.0, float("nan"))
                gradients = [None if g is None else g + tf.cast(poison, g.dtype) for g in gradients]
        else:
            loss, logs, gradients, _, values = self._loss_and_gradients(
                batch, global_batch, stateless=False
            )
        self.optimizer.apply(gradients, self.trainable_variables)
        if values:
            self._after_step(values, finite)
        self._track_loss(loss)
        logs["learning_rate"] = tf.convert_to_tensor(self.optimizer.learning_rate)
        return self._results(True, logs)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:  # noqa: D102
        batch = self._features(data)
        global_batch = global_batch_size(batch)
        step = self.optimizer.iterations if self.optimizer else 0

        def evaluate() -> tf.Tensor:
            loss, _, _ = unpack_compute(
                self.objective.compute(
                    self, batch, training=False, step=step, global_batch=global_batch
                )
            )
            return tf.cast(loss, tf.float32)

        # A replica can get no example of the last batch. Its towers are not run: oneDNN's
        # Conv3D returns its input unchanged on an empty batch (TF 2.21), which breaks the
        # layers after it.
        loss = tf.cond(local_batch_size(batch) > 0, evaluate, lambda: tf.constant(0.0))
        self._track_loss(loss)
        return self._results(False, {})

    def get_config(self) -> dict[str, Any]:  # noqa: D102
        return {
            "name": self.name,
            "video_tower": keras.saving.serialize_keras_object(self.video_tower),
            "audio_tower": keras.saving.serialize_keras_object(self.audio_tower),
            "objective": keras.saving.serialize_keras_object(self.objective),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AVTSModel:
        """The model of ``get_config`` (towers and task deserialized first)."""
        config = dict(config)
        for key in ("video_tower", "audio_tower", "objective"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _multi_worker(strategy: tf.distribute.Strategy) -> bool:
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    return strategy.extended._in_multi_worker_mode()


def _global_results(metrics: list[keras.metrics.Metric]) -> dict[str, tf.Tensor]:
    """Metric results from their states summed over replicas.

    Each replica's metric holds the sums of its own examples. Keras averages the replicas'
    *results*, which is wrong for ratios and for unequal shares (the last evaluation
    batch); summing the states first gives what one device would report, for every
    metric whose state is additive (means, counts, confusion matrices, ours).
    """
    context = tf.distribute.get_replica_context()
    # Copies made here carry this replica's device: under MultiWorkerMirroredStrategy a
    # metric variable's read has none, and the all-reduce needs one.
    states = [[tf.identity(v.value) for v in metric.variables] for metric in metrics]
    flat = [tf.cast(s, tf.float32) if s.dtype.is_integer else s for m in states for s in m]
    summed = context.all_reduce("sum", flat)
    results, offset = {}, 0
    for metric, own in zip(metrics, states, strict=True):
        values = [tf.cast(v, s.dtype) for v, s in zip(summed[offset:], own, strict=False)]
        offset += len(own)
        results[metric.name] = metric.stateless_result(values)
    return results


def _tower_state(model: AVTSModel) -> list[keras.Variable]:
    return model.video_tower.non_trainable_variables + model.audio_tower.non_trainable_variables


class _StatelessTowers:
    """Stands in for the model in ``Task.compute``: towers without side effects."""

    def __init__(self, model: AVTSModel) -> None:
        self._state = {}
        self.video_tower = self._wrap(model.video_tower)
        self.audio_tower = self._wrap(model.audio_tower)
        self._towers = (model.video_tower, model.audio_tower)

    def _wrap(self, tower: keras.Model):
        def call(inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
            state = self._state.get(id(tower), tower.non_trainable_variables)
            outputs, state = tower.stateless_call(
                [v.value for v in tower.trainable_variables],
                [tf.convert_to_tensor(v) for v in state],
                inputs,
                training=training,
            )
            self._state[id(tower)] = state
            return outputs

        return call

    def new_state(self) -> list[tf.Tensor]:
        """The towers' non-trainable values after the calls so far."""
        return [
            tf.convert_to_tensor(v)
            for tower in self._towers
            for v in self._state.get(id(tower), tower.non_trainable_variables)
        ]
