"""The temporal audio-visual task: speed, direction and ordering heads, queue contrastive loss.

Every example holds K views of one video (``views.cut_views``). The task trains:

* **speed** and **direction** classifiers per modality on each view (single-clip heads,
  as the paper's patent describes them);
* **temporal ordering** classifiers on pairs of views: video-video and audio-audio for
  every pair ``i < j``, video-audio for video view 0 against audio view ``j >= 1`` (our
  choice: view 0's position says nothing of its classes, ``views.place_views``, so the
  cross-modal head cannot answer from one clip's place in its video, only by comparing
  the two), classes {overlap, i before j, j before i} from the views' intervals in
  original time (``ordering.order_labels``);
* a **contrastive** loss (``contrastive.info_nce_with_queue``) between the first two
  views' video projections (both directions) and between view 0's video and its
  time-aligned audio (video->audio and audio->video), with a FIFO **feature queue** per
  modality supplying nearest-neighbour extra positives and negatives once it is full.
  In training the keys are gathered over replicas (``gather_over_replicas``), so every
  anchor meets the whole step's negatives, as on one device.

The queues are task state (``Task.add_state``): ``after_step`` pushes the step's keys
(gathered over all replicas), so they are identical on every replica and checkpointed.
Evaluation adds ``retrieval_r1_v2a`` over the whole held-out set (``dataset_metrics``).

Controls (``control``, training only; evaluation stays the honest one):
``"permuted_labels"`` gives each example the heads' labels of another example of the
batch (a random cyclic shift, so none keeps its own: every head should fall to chance),
``"shuffled_frames"`` plays each view's video and log-mel frames in a random order
(direction heads), ``"unrelated_audio"`` pairs each example with the audio of the
example half a batch away (cross-modal ordering and retrieval). The two controls that
pair examples pair the batch's two halves and run the towers on each view of each half
alone: BatchNorm's batch statistics would otherwise leak each example's features into
the others' (the label control's heads then learn that leak and fall below chance).

Stated by the paper: the four pretexts, the contrastive pairs (video-video and
video-audio) and the sample-dependent positives and negatives. **Our choices** (gin
parameters): K, speeds, heads (linear speed/direction heads, one-hidden-layer MLP
ordering heads on concatenated features), the 2-layer projection of ``projection_dim``,
``temperature``, ``queue_size``, loss weights (all 1). Evaluation's contrastive loss
contrasts each replica's examples only.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from avts_tf.registry import OBJECTIVES
from avts_tf.settings import number_setting
from avts_tf.tasks.base import (
    ControlledMetric,
    Projections,
    Task,
    gather_over_replicas,
    global_batch_size,
)
from avts_tf.tasks.temporal import contrastive, views
from avts_tf.tasks.temporal.ordering import ORDER_CLASSES, order_labels

TERMS = ("speed", "direction", "order", "contrastive")
CONTROLS = ("none", "permuted_labels", "shuffled_frames", "unrelated_audio")
MIXING_CONTROLS = ("permuted_labels", "unrelated_audio")  # Pair rows of the two halves.
HEADS = tuple(
    f"{head}_accuracy_{modality}"
    for head, modality in (
        ("speed", "video"),
        ("speed", "audio"),
        ("direction", "video"),
        ("direction", "audio"),
        ("order", "video"),
        ("order", "audio"),
        ("order", "cross"),
    )
)
"""The classification heads, as ``eval.json`` names their accuracies."""
CONTROLLED = (*HEADS, "retrieval_r1_v2a")
"""What a control study reports: the heads, then video -> audio recall@1."""
REMOVES: dict[str, tuple[str, ...]] = {
    "none": (),
    "permuted_labels": HEADS,
    "shuffled_frames": ("direction_accuracy_video", "direction_accuracy_audio"),
    "unrelated_audio": ("order_accuracy_cross", "retrieval_r1_v2a"),
}
"""Each control and the metrics it should bring to chance."""
TITLES = {
    "speed_accuracy_video": "speed v",
    "speed_accuracy_audio": "speed a",
    "direction_accuracy_video": "dir v",
    "direction_accuracy_audio": "dir a",
    "order_accuracy_video": "order v",
    "order_accuracy_audio": "order a",
    "order_accuracy_cross": "order v-a",
    "retrieval_r1_v2a": "R@1 v->a",
}
PROJECTIONS = "the temporal task's projections (project_video, project_audio)"
# What the heads learn from, per example: permuted together by the label control.
LABELS = ("speed", "backward", "view_start", "view_span")


def recall_at_1(
    queries: np.ndarray,
    gallery: np.ndarray,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    chunk: int = 1024,
) -> float:
    """Share of queries whose most similar gallery row (dot product) has the query's id.

    Scores are computed ``chunk`` queries at a time, so memory stays ``chunk x len(gallery)``.
    NaN (undefined: evaluation leaves it out) when the gallery holds fewer than two ids,
    where every query would hit.
    """
    if np.unique(gallery_ids).size < 2:
        return float("nan")
    hits = []
    for begin in range(0, len(queries), chunk):
        scores = queries[begin : begin + chunk] @ gallery.T
        hits.append(gallery_ids[np.argmax(scores, axis=1)] == query_ids[begin : begin + chunk])
    return float(np.mean(np.concatenate(hits)))


#: How far above its uniform share a held-out class may be before the run says so.
DOMINANT_MARGIN = 0.05


def _majority(labels: np.ndarray) -> tuple[int, float, int]:
    """The most frequent label, its share and the number of distinct labels."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    top = int(np.argmax(counts))
    return int(values[top]), float(counts[top] / counts.sum()), len(values)


def _dominant_caveat(what: str, answer: str, share: float, metrics: str, chance: float) -> str:
    return (
        f"{share:.0%} {what}: a head answering {answer} alone scores {share:.3f} on "
        f"{metrics}; compare them with that, not with {chance:.3f}"
    )


def _recall_v2a(embedded: Mapping[str, np.ndarray]) -> float:
    """:func:`recall_at_1` of video views querying audio views (``embed_views``' output)."""
    return recall_at_1(
        embedded["video"], embedded["audio"], embedded["video_id"], embedded["video_id"]
    )


def derangement(step: tf.Tensor | int, size: tf.Tensor | int) -> tf.Tensor:
    """Row order of the label control: each row takes a row of the other half of the batch.

    Rows ``i < h = size // 2`` take ``h + (i + r) mod h`` and rows ``i >= h`` take
    ``(i - h + r) mod h``, ``r`` drawn per step. No row keeps its own labels (a plain
    permutation leaves ``1 / size`` of them in place, a signal the heads learn), and
    with the towers run on each half separately (``embed_clips``) no row's features hold,
    through BatchNorm's batch statistics, anything of the row whose labels it takes.
    """
    seed = tf.stack([tf.cast(step, tf.int32), tf.constant(20230207, tf.int32)])
    half = tf.cast(size, tf.int32) // 2
    shift = tf.random.stateless_uniform([], seed, 0, tf.maximum(half, 1), dtype=tf.int32)
    rows = tf.range(half)
    return tf.concat([half + (rows + shift) % half, (rows + shift) % half], axis=0)


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
        video_video_weight: Weight of the two video-video InfoNCE terms against the two
            video-audio ones inside the contrastive term; our choice (1). Two views of
            one video share its background, which alone can solve the video-video
            pairs (see docs/temporal.md, "Downstream").
        control: ``"none"``, or a training control that removes a cue (``CONTROLS``;
            see the module docstring).
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    headline = "speed_accuracy_video"
    gathers_over_replicas = True

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
        video_video_weight: float = 1.0,
        control: str = "none",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if control not in CONTROLS:
            raise ValueError(f"Unknown control {control!r}; valid: {', '.join(CONTROLS)}.")
        self.control = control
        if isinstance(view_spec, Mapping):
            view_spec = views.ViewSpec(**view_spec)
        self.view_spec = view_spec or views.ViewSpec()
        if self.view_spec.num_views < 2:
            raise ValueError("The temporal task needs num_views >= 2 (ordering, contrast).")
        unknown = sorted(set(loss_weights or {}) - set(TERMS))
        if unknown:
            raise ValueError(f"Unknown loss_weights {unknown}; valid: {', '.join(TERMS)}.")
        self.loss_weights = {
            t: number_setting(
                f"loss_weights[{t!r}]", (loss_weights or {}).get(t, 1.0), zero_allowed=True
            )
            for t in TERMS
        }
        self.projection_dim = number_setting("projection_dim", projection_dim, integer=True)
        self.hidden_units = number_setting("hidden_units", hidden_units, integer=True)
        self.temperature = number_setting("temperature", temperature)
        self.queue_size = number_setting("queue_size", queue_size, integer=True)
        self.extra_positives = bool(extra_positives)
        self.extra_negatives = bool(extra_negatives)
        self.video_video_weight = number_setting(
            "video_video_weight", video_video_weight, zero_allowed=True
        )
        self.accuracy = {
            f"{head}_accuracy_{modality}": keras.metrics.SparseCategoricalAccuracy(
                name=f"{head}_accuracy_{modality}"
            )
            for head, modality in [
                ("speed", "video"),
                ("speed", "audio"),
                ("direction", "video"),
                ("direction", "audio"),
                ("order", "video"),
                ("order", "audio"),
                ("order", "cross"),
            ]
        }
        self.contrastive_loss = keras.metrics.Mean(name="contrastive_loss")

    # -- examples ---------------------------------------------------------------------
    @property
    def window_multiple(self) -> int:  # noqa: D102
        return min(self.view_spec.speeds)  # A record holds at least one view at that speed.

    @property
    def batch_multiple(self) -> int:  # noqa: D102
        return 2 if self.control in MIXING_CONTROLS else 1  # embed_clips splits the batch.

    def train_example(self, clips, record, seed):  # noqa: D102
        return views.cut_views(
            clips,
            record,
            seed,
            self.view_spec,
            training=True,
            shuffle_frames=self.control == "shuffled_frames",
        )

    def eval_example(self, clips, record, seed, clip_index, num_clips):  # noqa: D102
        return views.cut_views(
            clips,
            record,
            seed,
            self.view_spec,
            training=False,
            clip_index=clip_index,
            num_clips=num_clips,
        )

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
            width = (
                {"video": 2 * video_dim, "audio": 2 * audio_dim, "cross": video_dim + audio_dim}[
                    modality
                ]
                if kind == "order"
                else inputs[modality]
            )
            head.build((None, width))
        size, dim = self.queue_size, self.projection_dim
        self.queues = {
            modality: (
                self.add_state(f"{modality}_queue", (size, dim)),
                self.add_state(f"{modality}_queue_ids", (size,), dtype="int64"),
                self.add_state(f"{modality}_queue_filled", (), dtype="int32"),
            )
            for modality in ("video", "audio")
        }

    # -- loss ---------------------------------------------------------------------------
    def _classify(self, name: str, features: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        logits = self.heads[name](features)
        self.accuracy[f"{name.split('_')[0]}_accuracy_{name.split('_')[1]}"].update_state(
            labels, logits
        )
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)

    def _contrast(self, anchors, keys, ids, modality: str, offset) -> tf.Tensor:
        queue, queue_ids, filled = self.queues[modality]
        return contrastive.info_nce_with_queue(
            anchors,
            keys,
            ids,
            tf.convert_to_tensor(queue),
            tf.convert_to_tensor(queue_ids),
            tf.equal(tf.convert_to_tensor(filled), self.queue_size),
            self.temperature,
            self.extra_positives,
            self.extra_negatives,
            offset=offset,
        )

    def _controlled(self, batch, video, audio, step):
        """Labels of the video side, labels of the audio side and audio, under the control."""
        labels = {key: batch[key] for key in LABELS}
        if self.control == "permuted_labels":
            order = derangement(step, tf.shape(video)[0])
            labels = {key: tf.gather(value, order) for key, value in labels.items()}
        if self.control == "unrelated_audio":
            shift = tf.shape(audio)[0] // 2
            audio_labels = {key: tf.roll(value, shift, axis=0) for key, value in labels.items()}
            return labels, audio_labels, tf.roll(audio, shift, axis=0)
        return labels, labels, audio

    def embed_clips(self, tower: keras.Model, clips: tf.Tensor, training: bool) -> tf.Tensor:
        """Features ``[B, K, D]`` float32 of ``[B, K, ...]`` views.

        In training under a control that pairs rows across the batch (they pair the two
        halves), the tower sees each view of each half alone, so BatchNorm's batch
        statistics carry nothing from one half into the other, nor from an example's
        other views into its view 0 (whose position is all the cross-modal ordering head
        has left under ``unrelated_audio``).
        """
        size, k = tf.shape(clips)[0], clips.shape[1]
        if not (training and self.control in MIXING_CONTROLS):
            flat = tf.reshape(clips, [-1, *clips.shape[2:]])
            out = tf.cast(tower(flat, training=training), tf.float32)
            return tf.reshape(out, [size, k, out.shape[-1]])
        with tf.control_dependencies(
            [
                tf.debugging.assert_equal(
                    size % 2,
                    0,
                    message=f"control {self.control!r} needs an even batch on each replica",
                )
            ]
        ):
            clips = tf.identity(clips)
        halves = [
            tf.stack(
                [tf.cast(tower(half[:, view], training=True), tf.float32) for view in range(k)],
                axis=1,
            )
            for half in tf.split(clips, 2)
        ]
        return tf.concat(halves, axis=0)

    def compute(self, model, batch, training, step, global_batch=None):  # noqa: D102
        if global_batch is None:
            global_batch = global_batch_size(batch)
        k = self.view_spec.num_views
        size = tf.shape(batch["video"])[0]

        video = self.embed_clips(model.video_tower, batch["video"], training)
        audio = self.embed_clips(model.audio_tower, batch["audio"], training)
        labels, audio_labels = batch, batch
        if training:
            labels, audio_labels, audio = self._controlled(batch, video, audio, step)

        def per_view(name, features, view_labels):
            flat = tf.reshape(features, [-1, features.shape[-1]])
            loss = self._classify(name, flat, tf.reshape(view_labels, [-1]))
            return tf.reshape(loss, [size, k])

        per_example = {
            "speed": per_view("speed_video", video, labels["speed"])
            + per_view("speed_audio", audio, audio_labels["speed"]),
            "direction": per_view("direction_video", video, labels["backward"])
            + per_view("direction_audio", audio, audio_labels["backward"]),
        }
        order_terms = []
        for i, j in itertools.combinations(range(k), 2):

            def order(view_labels, a=i, b=j):
                start, span = view_labels["view_start"], view_labels["view_span"]
                return order_labels(start[:, a], span[:, a], start[:, b], span[:, b])

            if i == 0:  # Across modalities: video view 0 against the audio of view j.
                order_terms.append(
                    self._classify(
                        "order_cross", tf.concat([video[:, 0], audio[:, j]], -1), order(labels)
                    )
                )
            for name, x, view_labels in (
                ("order_video", video, labels),
                ("order_audio", audio, audio_labels),
            ):
                order_terms.append(
                    self._classify(name, tf.concat([x[:, i], x[:, j]], -1), order(view_labels))
                )
        per_example["order"] = tf.add_n(order_terms)

        zv = [self.heads["project_video"](video[:, i]) for i in range(2)]
        za = self.heads["project_audio"](audio[:, 0])
        local = {"zv0": zv[0], "zv1": zv[1], "za": za, "ids": batch["video_id"]}
        if training:  # The whole step's keys (one device: the batch itself).
            step_keys, offset = gather_over_replicas(local)
        else:
            step_keys, offset = local, 0
        ids = step_keys["ids"]
        among_video = self._contrast(
            zv[0], step_keys["zv1"], ids, "video", offset
        ) + self._contrast(zv[1], step_keys["zv0"], ids, "video", offset)
        contrast = (
            self.video_video_weight * among_video
            + self._contrast(zv[0], step_keys["za"], ids, "audio", offset)
            + self._contrast(za, step_keys["zv0"], ids, "video", offset)
        )
        self.contrastive_loss.update_state(contrast)
        per_example["contrastive"] = contrast

        total = tf.add_n([self.loss_weights[t] * tf.reduce_sum(per_example[t]) for t in TERMS])
        loss = tf.math.divide_no_nan(total, tf.cast(global_batch, tf.float32))
        keys = {
            "video_key": tf.math.l2_normalize(zv[0], -1),
            "audio_key": tf.math.l2_normalize(za, -1),
            "video_id": batch["video_id"],
        }
        return loss, {}, {name: tf.stop_gradient(v) for name, v in keys.items()}

    def dataset_metrics(self, model, dataset):
        """``retrieval_r1_v2a``; ``contrastive_loss`` NaN (undefined) under two videos.

        With one held-out video no anchor has a negative: its InfoNCE is 0 whatever the
        towers, so it is NaN here rather than a value. Caveats of the held-out labels are
        logged.
        """
        embedded = self.embed_views(model, dataset)
        for caveat in self.held_out_caveats(embedded):
            logging.warning("%s", caveat)
        metrics = {"retrieval_r1_v2a": _recall_v2a(embedded)}
        if len(np.unique(embedded["video_id"])) < 2:
            metrics["contrastive_loss"] = float("nan")
        return metrics

    def held_out_caveats(self, embedded: Mapping[str, np.ndarray]) -> list[str]:
        """What the held-out accuracies cannot say, or must be compared with.

        On records too short for slower views every held-out view is at one speed, and
        on records too short for two views apart every pair overlaps; the head is then
        scored against a single answer, which a head that learned nothing can give. Where
        one class merely dominates by more than :data:`DOMINANT_MARGIN` (short records, few
        held-out views, or with K > 2 views the pairs other than view 0's, whose classes
        the held-out views do not balance), a head answering that class alone scores its
        share, not chance: the caveat names the share.

        Args:
            embedded: :meth:`embed_views`'s output (its ``speed`` and ``order`` labels).
        """
        caveats = []
        spec = self.view_spec
        speeds = embedded["speed"]
        if len(speeds) and len(spec.speeds) > 1:
            index, share, distinct = _majority(speeds)
            if distinct == 1:
                caveats.append(
                    f"every held-out view is at speed {spec.speeds[index]}x (no held-out record "
                    f"holds a view at another of the speeds {spec.speeds}): "
                    "speed_accuracy_video and speed_accuracy_audio say nothing of the towers; "
                    "evaluate on longer videos"
                )
            elif share > 1 / len(spec.speeds) + DOMINANT_MARGIN:
                caveats.append(
                    _dominant_caveat(
                        f"of the held-out views are at speed {spec.speeds[index]}x",
                        f"{spec.speeds[index]}x",
                        share,
                        "speed_accuracy_video and speed_accuracy_audio",
                        1 / len(spec.speeds),
                    )
                )
        orders = embedded["order"]
        if not len(orders):
            return caveats
        index, share, distinct = _majority(orders)
        if distinct == 1:
            caveats.append(
                f"every held-out pair of views is '{ORDER_CLASSES[index]}' (the held-out records "
                "are too short for views apart): order_accuracy_video, order_accuracy_audio and "
                "order_accuracy_cross say nothing of the towers; evaluate on longer videos"
            )
            return caveats
        k = spec.num_views
        if share > 1 / 3 + DOMINANT_MARGIN:
            caveats.append(
                _dominant_caveat(
                    f"of the held-out pairs of views are '{ORDER_CLASSES[index]}'",
                    f"'{ORDER_CLASSES[index]}'",
                    share,
                    "order_accuracy_video and order_accuracy_audio",
                    1 / 3,
                )
            )
        # The cross-modal head pairs video view 0 with audio view j: pairs (0, j), first
        # among each example's pairs i < j.
        cross = orders.reshape(-1, k * (k - 1) // 2)[:, : k - 1]
        index, share, _ = _majority(cross)
        if share > 1 / 3 + DOMINANT_MARGIN:
            caveats.append(
                _dominant_caveat(
                    f"of the held-out pairs of video view 0 and an audio view are "
                    f"'{ORDER_CLASSES[index]}'",
                    f"'{ORDER_CLASSES[index]}'",
                    share,
                    "order_accuracy_cross",
                    1 / 3,
                )
            )
        return caveats

    def embed_views(self, model: keras.Model, dataset: tf.data.Dataset) -> dict[str, Any]:
        """L2-normalised projections of every view of ``dataset``, with their video ids.

        Returns:
            NumPy ``video`` and ``audio`` ``[N * K, projection_dim]``, ``video_id`` and
            ``speed`` (index into the view speeds) ``[N * K]``, one row per view, and
            ``order`` ``[N * K * (K - 1) / 2]``, the ordering class of each pair ``i < j``
            of an example's views (``N = 0`` for an empty ``dataset``).
        """

        @tf.function
        def project(batch):
            out = {}
            for modality, tower in (("video", model.video_tower), ("audio", model.audio_tower)):
                clips = batch[modality]
                flat = tf.reshape(clips, [-1, *clips.shape[2:]])
                features = tf.cast(tower(flat, training=False), tf.float32)
                out[modality] = tf.math.l2_normalize(
                    self.heads[f"project_{modality}"](features), -1
                )
            k = tf.shape(batch["video"])[1]
            out["video_id"] = tf.repeat(batch["video_id"], k)
            out["speed"] = tf.reshape(batch["speed"], [-1])
            start, span = batch["view_start"], batch["view_span"]
            pairs = itertools.combinations(range(batch["video"].shape[1]), 2)
            out["order"] = tf.reshape(
                tf.stack(
                    [
                        order_labels(start[:, i], span[:, i], start[:, j], span[:, j])
                        for i, j in pairs
                    ],
                    axis=1,
                ),
                [-1],
            )
            return out

        parts = [{key: value.numpy() for key, value in project(batch).items()} for batch in dataset]
        if not parts:
            dim = self.projection_dim
            return {
                "video": np.zeros([0, dim], np.float32),
                "audio": np.zeros([0, dim], np.float32),
                "video_id": np.zeros([0], np.int64),
                "speed": np.zeros([0], np.int32),
                "order": np.zeros([0], np.int32),
            }
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def retrieval_r1(self, model: keras.Model, dataset: tf.data.Dataset) -> float:
        """Recall@1 of video-to-audio retrieval over every view of ``dataset``.

        Each video view queries the audio views of all examples (cosine similarity of
        the contrastive projections); a hit is an audio view of the query's own video.
        Chance is about one over the number of videos.
        """
        return _recall_v2a(self.embed_views(model, dataset))

    def after_step(self, values, applied):  # noqa: D102
        for modality in ("video", "audio"):
            queue, queue_ids, filled = self.queues[modality]
            new_queue, new_ids, new_filled = contrastive.enqueue(
                tf.convert_to_tensor(queue),
                tf.convert_to_tensor(queue_ids),
                tf.convert_to_tensor(filled),
                values[f"{modality}_key"],
                values["video_id"],
            )
            for variable, value in ((queue, new_queue), (queue_ids, new_ids), (filled, new_filled)):
                variable.assign(tf.where(applied, value, tf.convert_to_tensor(variable)))

    def reported_metrics(self, training):  # noqa: D102
        return list(self.accuracy.values()) + [self.contrastive_loss]

    # -- evaluation hooks ---------------------------------------------------------------
    def shared_space(self, model):
        """The projection heads: the towers' raw outputs are two unrelated spaces."""
        del model
        return Projections(
            PROJECTIONS,
            self.heads["project_video"],
            self.heads["project_audio"],
            why="the run's temporal task compares audio and video through trained projection heads",
        )

    def controls(self):  # noqa: D102
        return dict(REMOVES)

    def control_metrics(self, held_out_videos):
        """The heads and video -> audio recall@1, with their chance levels.

        Speed: one over the view speeds; direction 1/2; ordering 1/3; recall@1: one over
        the held-out videos.
        """
        chance = {
            "speed": 1 / len(self.view_spec.speeds),
            "direction": 1 / 2,
            "order": 1 / 3,
            "retrieval": 1 / max(held_out_videos, 1),
        }
        return tuple(ControlledMetric(m, TITLES[m], chance[m.split("_")[0]]) for m in CONTROLLED)

    def get_config(self) -> dict:  # noqa: D102
        config = super().get_config()
        spec = self.view_spec
        config.update(
            {
                "view_spec": {
                    "num_views": spec.num_views,
                    "speeds": list(spec.speeds),
                    "backward_probability": spec.backward_probability,
                    "audio_speed": spec.audio_speed,
                    "color_jitter": spec.color_jitter,
                },
                "projection_dim": self.projection_dim,
                "hidden_units": self.hidden_units,
                "temperature": self.temperature,
                "queue_size": self.queue_size,
                "loss_weights": dict(self.loss_weights),
                "extra_positives": self.extra_positives,
                "extra_negatives": self.extra_negatives,
                "video_video_weight": self.video_video_weight,
                "control": self.control,
            }
        )
        return config
