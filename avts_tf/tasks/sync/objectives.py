"""The AVTS synchronization objectives, tasks (``avts_tf.tasks.base.Task``) of their own.

They cut aligned clips with same-video negatives and score in-sync against out-of-sync.

Synchronization objectives pair every video clip with its in-sync audio (a positive) and
with one out-of-sync audio (a negative), so positives and negatives come in equal parts.
The kind of each negative is drawn from the curriculum's mixture at the current step:

* ``easy``: the audio of another example of the batch. ``batch_examples`` cuts it over the
  worker's batch (``audio_easy``, the next example's audio, with ``valid_easy``), so the pairs
  do not depend on the number of replicas; without those keys the objective takes the next
  example of this replica's batch. Pairs whose two examples come from the same video are
  dropped (weight 0).
* ``hard`` / ``super_hard``: the audio windows the pipeline cut from the same video
  (``audio_hard``, ``audio_super_hard``). Where the pipeline could not cut one (the video
  was too short), the example falls back to an easy negative and is counted as easy.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from avts_tf.errors import UserError
from avts_tf.registry import OBJECTIVES, SAMPLERS
from avts_tf.tasks.base import Task, global_batch_size, replica_id
from avts_tf.tasks.sync import curricula, losses
from avts_tf.tasks.sync.curricula import ConstantMixture, Curriculum
from avts_tf.tasks.sync.metrics import BalancedSyncAccuracy
from avts_tf.tasks.sync.samplers import (
    NEGATIVE_TYPES,
    EasyNegativeSampler,
    NegativeSampler,
    negative_samplers,
)

EASY, HARD, SUPER_HARD = range(len(NEGATIVE_TYPES))


def add_easy_negatives(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Adds each example's easy negative: the audio of the next example of the batch.

    Cut over the whole batch before a strategy splits it, so the pairs are the same on
    any number of replicas. ``valid_easy`` is False where the next example comes from
    the same video.
    """
    batch = dict(batch)
    next_in_batch = EasyNegativeSampler.next_in_batch
    batch["audio_easy"], batch["valid_easy"] = next_in_batch(batch["audio"], batch["video_id"])
    batch["audio_start_easy"], _ = next_in_batch(batch["audio_start"], batch["video_id"])
    return batch


def _audio_key(key: str) -> bool:
    return key.startswith("audio") or key.startswith("valid_")


def unrelated_audio(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The shuffled-audio control: each example gets the audio of the example half a batch on.

    Every audio window of the example (with its negatives, starts and flags) moves
    together, so nothing left in the batch is in sync except by chance.
    """
    size = tf.shape(batch["video"])[0]
    shift = tf.maximum(size // 2, 1)
    return {k: tf.roll(v, shift, axis=0) if _audio_key(k) else v for k, v in batch.items()}


def _serialize_samplers(samplers: Mapping[str, NegativeSampler]) -> dict[str, dict]:
    return {kind: dict(vars(sampler)) for kind, sampler in sorted(samplers.items())}


def _deserialize_samplers(config: Mapping[str, Any]) -> dict[str, NegativeSampler]:
    samplers = {}
    for kind, value in config.items():
        samplers[kind] = (
            value if isinstance(value, NegativeSampler) else SAMPLERS.build(kind, **value)
        )
    return samplers


class SyncObjective(Task, metaclass=abc.ABCMeta):
    """The AVTS synchronization task: examples, negatives, loss and metrics.

    Each training example is a video clip at a random start with its in-sync audio and,
    for every sampler in ``negatives``, an out-of-sync audio window cut from the same
    record (``audio_<kind>``, ``audio_start_<kind>``, ``valid_<kind>``); each batch adds
    the easy negative (``add_easy_negatives``). Evaluation cuts evenly spaced clips.

    Args:
        curriculum: Mixture of negative kinds over training steps (default: easy only).
        negatives: Same-video negative samplers cut by the reader, keyed by kind
            (``@negative_samplers()``); needed when the curriculum draws hard or
            super-hard negatives.
        shuffle_audio: Control run: pair every training clip with unrelated audio
            (``unrelated_audio``), so synchronization cannot be learned.
        eval_kinds: Negative kinds scored in evaluation (``sync_accuracy_<kind>``;
            default: easy and the kinds of ``negatives``). ``sync_accuracy`` in
            evaluation always uses easy negatives (the paper's protocol). Training
            reports the per-kind metrics of the kinds the curriculum can draw. A per-kind
            accuracy is NaN while it has seen no negative of its kind.
        seed: Salt of the stateless draws of negative kinds.
    """

    headline = "sync_accuracy"

    def __init__(
        self,
        curriculum: Curriculum | None = None,
        negatives: Mapping[str, NegativeSampler] | None = None,
        shuffle_audio: bool = False,
        eval_kinds: Sequence[str] | None = None,
        seed: int = 1234,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.curriculum = curriculum or ConstantMixture()
        self.negatives = _deserialize_samplers(negatives or {})
        unknown = sorted(set(self.negatives) - set(NEGATIVE_TYPES[1:]))
        if unknown:
            raise ValueError(
                f"Unknown negative kinds {unknown}; valid: {', '.join(NEGATIVE_TYPES[1:])}."
            )
        self.shuffle_audio = bool(shuffle_audio)
        if eval_kinds is None:
            eval_kinds = ("easy",) + tuple(sorted(self.negatives))
        unknown = sorted(set(eval_kinds) - set(NEGATIVE_TYPES))
        if unknown:
            raise ValueError(f"Unknown eval_kinds {unknown}; valid: {', '.join(NEGATIVE_TYPES)}.")
        self.eval_kinds = tuple(eval_kinds)
        self.seed = int(seed)
        self.accuracy = BalancedSyncAccuracy(name="sync_accuracy")
        self.kind_accuracy = {
            kind: BalancedSyncAccuracy(name=f"sync_accuracy_{kind}") for kind in NEGATIVE_TYPES
        }
        self.negative_fraction = {
            kind: keras.metrics.Mean(name=f"negatives_{kind}") for kind in NEGATIVE_TYPES
        }

    # -- examples ---------------------------------------------------------------------
    def _example(self, clips, record, start_frame, training, seeds):
        example = clips.aligned(record, start_frame, training, seeds[1])
        # Negatives range over the video window's starts, so that their starts can have
        # the positives' distribution (see avts_tf.tasks.sync.samplers).
        windows = clips.windows(record)
        window = tf.constant(windows.window, tf.int64)
        for i, (kind, sampler) in enumerate(sorted(self.negatives.items())):
            start, valid = sampler.sample(
                example["video_start"],
                window,
                windows.latest_start,
                clips.sample_rate,
                seeds[2 + i],
            )
            example[f"audio_{kind}"] = clips.audio(record, start)
            example[f"audio_start_{kind}"] = start
            example[f"valid_{kind}"] = valid
        return example

    def train_example(self, clips, record, seed):  # noqa: D102
        seeds = tf.random.experimental.stateless_split(seed, 2 + len(self.negatives))
        return self._example(clips, record, clips.random_start(record, seeds[0]), True, seeds)

    def eval_example(self, clips, record, seed, clip_index, num_clips):  # noqa: D102
        seeds = tf.random.experimental.stateless_split(seed, 2 + len(self.negatives))
        start = clips.evenly_spaced_start(record, clip_index, num_clips)
        return self._example(clips, record, start, False, seeds)

    def batch_examples(self, batch, training):  # noqa: D102
        if training and self.shuffle_audio:
            batch = unrelated_audio(batch)
        return add_easy_negatives(batch)

    def stage(self, step: int) -> int:  # noqa: D102
        return int(self.curriculum.stage(tf.constant(step, tf.int64)))

    # -- subclasses -------------------------------------------------------------------
    @abc.abstractmethod
    def score(self, video: tf.Tensor, audio: tf.Tensor) -> tf.Tensor:
        """Per-pair score from embeddings (a distance or a logit)."""

    @abc.abstractmethod
    def pair_loss(self, score: tf.Tensor, in_sync: tf.Tensor) -> tf.Tensor:
        """Per-pair loss from scores and labels."""

    @abc.abstractmethod
    def predict_in_sync(self, score: tf.Tensor) -> tf.Tensor:
        """Boolean in-sync decision per pair."""

    def update_score_metrics(self, score: tf.Tensor, in_sync: tf.Tensor, weight: tf.Tensor):
        """Hook for score-specific metrics (mean distances, ...)."""

    # -- shared ------------------------------------------------------------------------
    def negative_audio(
        self, batch: dict[str, tf.Tensor], kinds: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Audio of each example's negative, its effective kind and its weight.

        Args:
            batch: Per-replica batch.
            kinds: ``[B]`` int32 requested kinds (indices into ``NEGATIVE_TYPES``).

        Returns:
            ``(audio, kinds, weight)``, ``kinds`` after falling back to easy where the
            pipeline could not cut the requested negative.
        """
        audio = batch["audio"]
        if "audio_easy" in batch:
            easy_audio, easy_ok = batch["audio_easy"], batch["valid_easy"]
        else:
            easy_audio, easy_ok = EasyNegativeSampler.next_in_batch(audio, batch["video_id"])
        chosen, weight = easy_audio, tf.cast(easy_ok, tf.float32)
        effective = tf.fill(tf.shape(kinds), EASY)
        for kind_index, key in ((HARD, "audio_hard"), (SUPER_HARD, "audio_super_hard")):
            if key not in batch:
                continue
            use = tf.logical_and(tf.equal(kinds, kind_index), batch[key.replace("audio", "valid")])
            mask = tf.reshape(use, [-1] + [1] * (len(audio.shape) - 1))
            chosen = tf.where(mask, batch[key], chosen)
            weight = tf.where(use, 1.0, weight)
            effective = tf.where(use, kind_index, effective)
        return chosen, effective, weight

    def compute(self, model, batch, training, step, global_batch=None):  # noqa: D102
        if global_batch is None:
            global_batch = global_batch_size(batch)
        video = model.video_tower(batch["video"], training=training)
        size = tf.shape(video)[0]
        logs: dict[str, tf.Tensor] = {}
        if training:
            mixture = self.curriculum.mixture(step)
            # Kinds are drawn for the global batch and sliced, so each example gets the
            # same kind whatever the number of replicas (shares are equal in training).
            seed = tf.stack([tf.cast(step, tf.int32), tf.constant(self.seed, tf.int32)])
            drawn = tf.random.stateless_categorical(
                tf.math.log(mixture[tf.newaxis] + 1e-12), global_batch, seed, dtype=tf.int32
            )[0]
            kinds = tf.slice(drawn, [replica_id() * size], [size])
            neg_audio, kinds, neg_weight = self.negative_audio(batch, kinds)
            negatives = [(neg_audio, kinds, neg_weight)]
            for i, kind in enumerate(NEGATIVE_TYPES):
                if kind in self.curriculum.kinds():
                    logs[f"curriculum/{kind}"] = mixture[i]
            logs["curriculum/stage"] = self.curriculum.stage(step)
        else:
            negatives = []
            for kind in self.eval_kinds:
                index = NEGATIVE_TYPES.index(kind)
                neg_audio, kinds, neg_weight = self.negative_audio(
                    batch, tf.fill([size], tf.constant(index, tf.int32))
                )
                # Keep only negatives of the asked kind in its evaluation.
                neg_weight *= tf.cast(tf.equal(kinds, index), tf.float32)
                negatives.append((neg_audio, kinds, neg_weight))

        audio_in = tf.concat([batch["audio"]] + [n[0] for n in negatives], axis=0)
        audio = model.audio_tower(audio_in, training=training)
        count = len(negatives) + 1
        video_rep = tf.tile(video, [count, 1])
        in_sync = tf.concat(
            [tf.ones([size], tf.float32)] + [tf.zeros([size], tf.float32)] * len(negatives), 0
        )
        weight = tf.concat([tf.ones([size], tf.float32)] + [n[2] for n in negatives], 0)
        kinds = tf.concat([tf.fill([size], -1)] + [n[1] for n in negatives], 0)

        score = self.score(video_rep, audio)
        per_pair = self.pair_loss(score, in_sync) * weight
        global_pairs = tf.cast(global_batch * count, tf.float32)
        loss = tf.math.divide_no_nan(tf.reduce_sum(per_pair), global_pairs)

        predicted = self.predict_in_sync(score)
        positive = tf.equal(kinds, -1)
        if training:
            self.accuracy.update_state(in_sync, predicted, weight)
        for i, kind in enumerate(NEGATIVE_TYPES):
            of_kind = tf.logical_or(positive, tf.equal(kinds, i))
            kind_weight = weight * tf.cast(of_kind, tf.float32)
            self.kind_accuracy[kind].update_state(in_sync, predicted, kind_weight)
            if not training and kind == "easy":
                self.accuracy.update_state(in_sync, predicted, kind_weight)
            if training:
                is_kind = tf.cast(tf.equal(kinds[size:], i), tf.float32)
                self.negative_fraction[kind].update_state(is_kind, weight[size:])
        self.update_score_metrics(score, in_sync, weight)
        return loss, logs

    def reported_metrics(self, training: bool) -> list[keras.metrics.Metric]:  # noqa: D102
        if training:
            # Kinds the curriculum can draw, and easy (the fallback of every kind).
            drawn = self.curriculum.kinds() | {"easy"}
            kinds = [k for k in NEGATIVE_TYPES if k in drawn]
            metrics = [self.accuracy] + [self.kind_accuracy[k] for k in kinds]
            metrics += [self.negative_fraction[k] for k in kinds]
        else:
            kinds = [k for k in self.eval_kinds if k != "easy"]
            metrics = [self.accuracy] + [self.kind_accuracy[k] for k in kinds]
        return metrics + self.score_metrics()

    def score_metrics(self) -> list[keras.metrics.Metric]:
        """Score-specific metrics."""
        return []

    # -- evaluation hooks ---------------------------------------------------------------
    def shared_space(self, model):
        """None: retrieval ranks the towers' outputs themselves (no projection heads)."""
        del model
        return None

    def sync_task(self):  # noqa: D102
        return self

    @property
    def negative_kinds(self) -> tuple[str, ...]:
        """The negative kinds this task can score (``easy`` first)."""
        return NEGATIVE_TYPES

    def scoring(self, kinds: Sequence[str] | None = None) -> SyncObjective:
        """A copy of this task that scores ``kinds`` (easy always) and cuts their negatives.

        Kinds this task trained with keep its samplers; the others get
        ``negative_samplers()``' defaults. Its ``eval_kinds`` are ``("easy", *others)``.

        Args:
            kinds: Negative kinds to score (None: every kind of :attr:`negative_kinds`).

        Raises:
            UserError: A kind is unknown.
        """
        kinds = self.negative_kinds if kinds is None else kinds
        unknown = [k for k in kinds if k not in self.negative_kinds]
        if unknown:
            raise UserError(
                f"unknown negative kind(s) {', '.join(unknown)}; valid: "
                f"{', '.join(self.negative_kinds)}"
            )
        kinds = ("easy",) + tuple(sorted(set(kinds) - {"easy"}))
        defaults = negative_samplers()
        negatives = {k: self.negatives.get(k, defaults[k]) for k in kinds if k != "easy"}
        return type(self).from_config(
            {**self.get_config(), "eval_kinds": list(kinds), "negatives": negatives}
        )

    def get_config(self) -> dict:  # noqa: D102
        config = super().get_config()
        config.update(
            {
                "curriculum": curricula.serialize(self.curriculum),
                "negatives": _serialize_samplers(self.negatives),
                "shuffle_audio": self.shuffle_audio,
                "eval_kinds": list(self.eval_kinds),
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> SyncObjective:  # noqa: D102
        config = dict(config)
        if isinstance(config.get("curriculum"), dict):
            config["curriculum"] = curricula.deserialize(config["curriculum"])
        return cls(**config)


@OBJECTIVES.register("contrastive")
@keras.saving.register_keras_serializable(package="avts_tf")
class ContrastiveSync(SyncObjective):
    """AVTS contrastive loss on the Euclidean distance of the two embeddings.

    ``E = 1/N sum_n y_n d_n^2 + (1 - y_n) max(margin - d_n, 0)^2``; a pair is predicted
    in sync when ``d < threshold``.

    Args:
        margin: The margin ``eta``.
        threshold: Decision threshold on the distance; default ``margin / 2``.
        normalize: L2-normalise embeddings first (distances then lie in ``[0, 2]``).
        **kwargs: Passed to ``SyncObjective`` (``curriculum``, ``eval_kinds``, ``seed``).
    """

    def __init__(
        self,
        margin: float = 1.0,
        threshold: float | None = None,
        normalize: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.margin = float(margin)
        self.threshold = float(threshold) if threshold is not None else self.margin / 2.0
        self.normalize = bool(normalize)
        self.pos_distance = keras.metrics.Mean(name="pos_distance")
        self.neg_distance = keras.metrics.Mean(name="neg_distance")

    def build_head(self, video_dim, audio_dim):  # noqa: D102
        if video_dim != audio_dim:
            raise ValueError(
                f"The contrastive objective compares embeddings directly, but the video tower "
                f"outputs {video_dim} and the audio tower {audio_dim} features; give both "
                f"towers the same embedding_dim."
            )

    def score(self, video, audio):  # noqa: D102
        video, audio = tf.cast(video, tf.float32), tf.cast(audio, tf.float32)
        if self.normalize:
            video, audio = tf.math.l2_normalize(video, -1), tf.math.l2_normalize(audio, -1)
        return losses.euclidean_distance(video, audio)

    def pair_loss(self, score, in_sync):  # noqa: D102
        return losses.contrastive_loss(score, in_sync, self.margin)

    def predict_in_sync(self, score):  # noqa: D102
        return score < self.threshold

    def update_score_metrics(self, score, in_sync, weight):  # noqa: D102
        self.pos_distance.update_state(score, in_sync * weight)
        self.neg_distance.update_state(score, (1.0 - in_sync) * weight)

    def score_metrics(self):  # noqa: D102
        return [self.pos_distance, self.neg_distance]

    def get_config(self):  # noqa: D102
        config = super().get_config()
        config.update(
            {"margin": self.margin, "threshold": self.threshold, "normalize": self.normalize}
        )
        return config


@OBJECTIVES.register("fusion")
@keras.saving.register_keras_serializable(package="avts_tf")
class FusionSync(SyncObjective):
    """The paper's alternative: a fully connected head on the concatenated embeddings.

    Trained with in-sync / out-of-sync cross-entropy; a pair is in sync when its logit > 0.

    Args:
        hidden_units: Widths of the hidden fully connected layers.
        **kwargs: Passed to ``SyncObjective``.
    """

    def __init__(self, hidden_units: tuple[int, ...] = (512, 128), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.head = keras.Sequential(
            [keras.layers.Dense(u, activation="relu") for u in self.hidden_units]
            + [keras.layers.Dense(1, dtype="float32")],
            name="fusion_head",
        )
        self.mean_logit_pos = keras.metrics.Mean(name="pos_logit")
        self.mean_logit_neg = keras.metrics.Mean(name="neg_logit")

    def build_head(self, video_dim, audio_dim):  # noqa: D102
        self.head.build((None, video_dim + audio_dim))

    def score(self, video, audio):  # noqa: D102
        return self.head(tf.concat([video, audio], axis=-1))[:, 0]

    def pair_loss(self, score, in_sync):  # noqa: D102
        return losses.sync_cross_entropy(score, in_sync)

    def predict_in_sync(self, score):  # noqa: D102
        return score > 0.0

    def update_score_metrics(self, score, in_sync, weight):  # noqa: D102
        self.mean_logit_pos.update_state(score, in_sync * weight)
        self.mean_logit_neg.update_state(score, (1.0 - in_sync) * weight)

    def score_metrics(self):  # noqa: D102
        return [self.mean_logit_pos, self.mean_logit_neg]

    def get_config(self):  # noqa: D102
        config = super().get_config()
        config["hidden_units"] = list(self.hidden_units)
        return config
