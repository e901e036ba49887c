"""``AVTSModel``: a video tower, an audio tower and a training objective."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from avts_tf.objectives import ContrastiveSync, Objective


@keras.saving.register_keras_serializable(package="avts_tf")
class AVTSModel(keras.Model):
    """Two towers trained by a pluggable objective with a custom ``train_step``.

    Works with plain ``compile(optimizer=...)`` and ``fit(dataset)`` on batches from
    ``avts_tf.data.pipeline``; no gin needed. Under ``tf.distribute`` strategies the
    objective divides the loss by the global batch, so gradients do not depend on the
    number of replicas. With a ``LossScaleOptimizer`` (``mixed_float16``) the loss is
    scaled before differentiation and gradients are unscaled by the optimizer.

    Args:
        video_tower: Functional model, input ``video`` ``(T, H, W, 3)``, output ``(B, D)``.
        audio_tower: Functional model, input ``audio`` ``(frames, mels, 1)``, output ``(B, D)``.
        objective: The training objective (default: AVTS contrastive, easy negatives).
        **kwargs: Passed to ``keras.Model``.

    Example:
        >>> model = AVTSModel(video_tower, audio_tower)
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> model.fit(train_batches, steps_per_epoch=100, epochs=3)
    """

    def __init__(
        self,
        video_tower: keras.Model,
        audio_tower: keras.Model,
        objective: Objective | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.video_tower = video_tower
        self.audio_tower = audio_tower
        self.objective = objective if objective is not None else ContrastiveSync()
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
        for metric in self.objective.reported_metrics(training=training):
            results[metric.name] = metric.result()
        results.update(logs)
        return results

    def _track_loss(self, loss: tf.Tensor) -> None:
        # ``loss`` is this replica's share of the global mean: scale back for display.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.loss_tracker.update_state(loss * replicas)

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:  # noqa: D102
        batch = self._features(data)
        step = self.optimizer.iterations
        with tf.GradientTape() as tape:
            loss, logs = self.objective.compute(self, batch, training=True, step=step)
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        self._track_loss(loss)
        logs["learning_rate"] = tf.convert_to_tensor(self.optimizer.learning_rate)
        return self._results(True, logs)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:  # noqa: D102
        batch = self._features(data)
        loss, logs = self.objective.compute(
            self, batch, training=False, step=self.optimizer.iterations if self.optimizer else 0
        )
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
    def from_config(cls, config: dict[str, Any]) -> AVTSModel:  # noqa: D102
        config = dict(config)
        for key in ("video_tower", "audio_tower", "objective"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
