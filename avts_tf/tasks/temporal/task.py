"""The temporal audio-visual task: speed, direction and ordering heads, queue contrastive loss.

Every example holds K views of one video (``views.cut_views``). The task trains:

* **speed** and **direction** classifiers per modality on each view (single-clip heads,
  as the paper's patent describes them);
* **temporal ordering** classifiers on pairs of views: video-video and audio-audio for
  every pair ``i < j``, video-audio for every ``(i, j)`` (the aligned pair ``i == j`` is
  "overlap"), classes {overlap, i before j, j before i} from the views' intervals in
  original time (``ordering.order_labels``);
* a **contrastive** loss (``contrastive.info_nce_with_queue``) between the two first
  views' video projections (both directions) and between each of them and its
  time-aligned audio (video->audio and audio->video), with a FIFO **feature queue** per
  modality supplying nearest-neighbour extra positives and negatives once it is full.

The queues are task state (``Task.add_state``): ``after_step`` pushes the step's keys
(gathered over all replicas), so they are identical on every replica and checkpointed.

Stated by the paper: the four pretexts, the contrastive pairs (video-video and
video-audio) and the sample-dependent positives and negatives. **Our choices** (gin
parameters): K, speeds, heads (linear speed/direction heads, one-hidden-layer MLP
ordering heads on concatenated features), the 2-layer projection of ``projection_dim``,
``temperature``, ``queue_size``, loss weights (all 1). In-batch contrastive negatives
are this replica's examples: several replicas see fewer negatives per anchor than one
device does.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from avts_tf.registry import OBJECTIVES
from avts_tf.tasks.base import Task, global_batch_size
from avts_tf.tasks.temporal import contrastive, views
from avts_tf.tasks.temporal.ordering import ORDER_CLASSES, order_labels

TERMS = ("speed", "direction", "order", "contrastive")


def _mlp(hidden: int, out: int, name: str) -> keras.Sequential:
    return keras.Sequential(
        [keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(out, dtype="float32")],
        name=name,
    )


@OBJECTIVES.register("temporal")
@keras.saving.register_keras_serializable(package="avts_tf")
class TemporalContrastive(Task):
    """Temporal self-supervision in both modalities with a queue contrastive loss.

    Args:
        view_spec: How views are drawn (default: gin-configured ``temporal.ViewSpec()``).
        projection_dim: Width of the L2-normalised projections; our choice (128).
        hidden_units: Hidden width of the projections and ordering heads; our choice.
        temperature: InfoNCE temperature; our choice (0.1).
        queue_size: Entries of each modality's queue; our choice (65,536 at paper
            scale, about 1,024 on the synthetic world).
        loss_weights: Weight of each term (``speed``, ``direction``, ``order``,
            ``contrastive``); our choice: 1 each.
        extra_positives: Use queue nearest neighbours as extra positives.
        extra_negatives: Use queue neighbours of the negatives as extra negatives.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    headline = "speed_accuracy_video"

    def __init__(
        self,
        view_spec: views.ViewSpec | Mapping[str, Any] | None = None,
        projection_dim: int = 128,
        hidden_units: int = 256,
        temperature: float = 0.1,
        queue_size: int = 1024,
        loss_weights: Mapping[str, float] | None = None,
        extra_positives: bool = True,
        extra_negatives: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(view_spec, Mapping):
            view_spec = views.ViewSpec(**view_spec)
        self.view_spec = view_spec or views.ViewSpec()
        if self.view_spec.num_views < 2:
            raise ValueError("The temporal task needs num_views >= 2 (ordering, contrast).")
        unknown = sorted(set(loss_weights or {}) - set(TERMS))
        if unknown:
            raise ValueError(f"Unknown loss_weights {unknown}; valid: {', '.join(TERMS)}.")
        self.loss_weights = {t: float((loss_weights or {}).get(t, 1.0)) for t in TERMS}
        self.projection_dim = int(projection_dim)
        self.hidden_units = int(hidden_units)
        self.temperature = float(temperature)
        self.queue_size = int(queue_size)
        self.extra_positives = bool(extra_positives)
        self.extra_negatives = bool(extra_negatives)
        self.accuracy = {
            f"{head}_accuracy_{modality}": keras.metrics.SparseCategoricalAccuracy(
                name=f"{head}_accuracy_{modality}")
            for head, modality in [("speed", "video"), ("speed", "audio"),
                                   ("direction", "video"), ("direction", "audio"),
                                   ("order", "video"), ("order", "audio"), ("order", "cross")]
        }
        self.contrastive_loss = keras.metrics.Mean(name="contrastive_loss")

    # -- examples ---------------------------------------------------------------------
    def train_example(self, clips, record, seed):  # noqa: D102
        return views.cut_views(clips, record, seed, self.view_spec, training=True)

    def eval_example(self, clips, record, seed, clip_index, num_clips):  # noqa: D102
        return views.cut_views(clips, record, seed, self.view_spec, training=False,
                               clip_index=clip_index, num_clips=num_clips)

    # -- heads and state ----------------------------------------------------------------
    def build_head(self, video_dim, audio_dim):  # noqa: D102
        speeds, hidden = len(self.view_spec.speeds), self.hidden_units
        self.heads = {
            "speed_video": keras.layers.Dense(speeds, dtype="float32", name="speed_video"),
            "speed_audio": keras.layers.Dense(speeds, dtype="float32", name="speed_audio"),
            "direction_video": keras.layers.Dense(2, dtype="float32", name="direction_video"),
            "direction_audio": keras.layers.Dense(2, dtype="float32", name="direction_audio"),
            "order_video": _mlp(hidden, len(ORDER_CLASSES), "order_video"),
            "order_audio": _mlp(hidden, len(ORDER_CLASSES), "order_audio"),
            "order_cross": _mlp(hidden, len(ORDER_CLASSES), "order_cross"),
            "project_video": _mlp(hidden, self.projection_dim, "project_video"),
            "project_audio": _mlp(hidden, self.projection_dim, "project_audio"),
        }
        inputs = {"video": video_dim, "audio": audio_dim}
        for name, head in self.heads.items():
            kind, modality = name.split("_")
            width = {"video": 2 * video_dim, "audio": 2 * audio_dim,
                     "cross": video_dim + audio_dim}[modality] if kind == "order" \
                else inputs[modality]
            head.build((None, width))
        size, dim = self.queue_size, self.projection_dim
        self.queues = {
            modality: (self.add_state(f"{modality}_queue", (size, dim)),
                       self.add_state(f"{modality}_queue_ids", (size,), dtype="int64"),
                       self.add_state(f"{modality}_queue_filled", (), dtype="int32"))
            for modality in ("video", "audio")
        }

    # -- loss ---------------------------------------------------------------------------
    def _classify(self, name: str, features: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        logits = self.heads[name](features)
        self.accuracy[f"{name.split('_')[0]}_accuracy_{name.split('_')[1]}"].update_state(
            labels, logits)
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)

    def _contrast(self, anchors, keys, ids, modality: str) -> tf.Tensor:
        queue, queue_ids, filled = self.queues[modality]
        return contrastive.info_nce_with_queue(
            anchors, keys, ids, tf.convert_to_tensor(queue), tf.convert_to_tensor(queue_ids),
            tf.equal(tf.convert_to_tensor(filled), self.queue_size), self.temperature,
            self.extra_positives, self.extra_negatives,
        )

    def compute(self, model, batch, training, step, global_batch=None):  # noqa: D102
        if global_batch is None:
            global_batch = global_batch_size(batch)
        k = self.view_spec.num_views
        size = tf.shape(batch["video"])[0]

        def embed(tower, clips):
            flat = tf.reshape(clips, [-1, *clips.shape[2:]])
            out = tf.cast(tower(flat, training=training), tf.float32)
            return tf.reshape(out, [size, k, out.shape[-1]])

        video = embed(model.video_tower, batch["video"])
        audio = embed(model.audio_tower, batch["audio"])
        flat_v, flat_a = (tf.reshape(x, [-1, x.shape[-1]]) for x in (video, audio))
        speed = tf.reshape(batch["speed"], [-1])
        backward = tf.reshape(batch["backward"], [-1])
        per_example = {}
        per_example["speed"] = sum(
            tf.reshape(self._classify(f"speed_{m}", x, speed), [size, k]) for m, x in
            (("video", flat_v), ("audio", flat_a))
        )
        per_example["direction"] = sum(
            tf.reshape(self._classify(f"direction_{m}", x, backward), [size, k]) for m, x in
            (("video", flat_v), ("audio", flat_a))
        )
        start, span = batch["view_start"], batch["view_span"]
        order_terms = []
        for i, j in itertools.product(range(k), range(k)):
            label = order_labels(start[:, i], span[:, i], start[:, j], span[:, j])
            order_terms.append(self._classify(
                "order_cross", tf.concat([video[:, i], audio[:, j]], -1), label))
            if i < j:
                for name, x in (("order_video", video), ("order_audio", audio)):
                    order_terms.append(self._classify(
                        name, tf.concat([x[:, i], x[:, j]], -1), label))
        per_example["order"] = tf.add_n(order_terms)

        ids = batch["video_id"]
        zv = [self.heads["project_video"](video[:, i]) for i in range(2)]
        za = [self.heads["project_audio"](audio[:, i]) for i in range(2)]
        contrast = (self._contrast(zv[0], zv[1], ids, "video")
                    + self._contrast(zv[1], zv[0], ids, "video")
                    + self._contrast(zv[0], za[0], ids, "audio")
                    + self._contrast(za[0], zv[0], ids, "video"))
        self.contrastive_loss.update_state(contrast)
        per_example["contrastive"] = contrast

        total = tf.add_n([
            self.loss_weights[t] * tf.reduce_sum(per_example[t]) for t in TERMS
        ])
        loss = tf.math.divide_no_nan(total, tf.cast(global_batch, tf.float32))
        keys = {"video_key": tf.math.l2_normalize(zv[0], -1),
                "audio_key": tf.math.l2_normalize(za[0], -1), "video_id": ids}
        return loss, {}, {k: tf.stop_gradient(v) for k, v in keys.items()}

    def after_step(self, values, applied):  # noqa: D102
        for modality in ("video", "audio"):
            queue, queue_ids, filled = self.queues[modality]
            new_queue, new_ids, new_filled = contrastive.enqueue(
                tf.convert_to_tensor(queue), tf.convert_to_tensor(queue_ids),
                tf.convert_to_tensor(filled), values[f"{modality}_key"], values["video_id"],
            )
            for variable, value in ((queue, new_queue), (queue_ids, new_ids),
                                    (filled, new_filled)):
                variable.assign(tf.where(applied, value, tf.convert_to_tensor(variable)))

    def reported_metrics(self, training):  # noqa: D102
        return list(self.accuracy.values()) + [self.contrastive_loss]

    def get_config(self) -> dict:  # noqa: D102
        config = super().get_config()
        spec = self.view_spec
        config.update({
            "view_spec": {"num_views": spec.num_views, "speeds": list(spec.speeds),
                          "backward_probability": spec.backward_probability,
                          "audio_speed": spec.audio_speed},
            "projection_dim": self.projection_dim, "hidden_units": self.hidden_units,
            "temperature": self.temperature, "queue_size": self.queue_size,
            "loss_weights": dict(self.loss_weights),
            "extra_positives": self.extra_positives, "extra_negatives": self.extra_negatives,
        })
        return config
