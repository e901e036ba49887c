"""Synchronization objectives: loss values by hand, negative fallback, drops, metrics."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import tiny_audio_tower, tiny_video_tower

from avts_tf.models import AVTSModel
from avts_tf.tasks.sync.curricula import ConstantMixture, StepSwitch
from avts_tf.tasks.sync.objectives import ContrastiveSync, FusionSync
from avts_tf.tasks.sync.samplers import NEGATIVE_TYPES

DIM = 3
MARGIN = 1.0


def identity_towers(dim: int = DIM) -> SimpleNamespace:
    """Towers whose embeddings are their inputs: video (1, 1, 1, D), audio (1, D, 1)."""
    video_in = keras.Input((1, 1, 1, dim), name="video")
    audio_in = keras.Input((1, dim, 1), name="audio")
    return SimpleNamespace(
        video_tower=keras.Model(video_in, keras.layers.Reshape((dim,))(video_in)),
        audio_tower=keras.Model(audio_in, keras.layers.Reshape((dim,))(audio_in)),
    )


def make_batch(video, audio, video_id, audio_hard=None, valid_hard=None):
    video = np.asarray(video, np.float32)
    batch = {
        "video": tf.constant(video.reshape(len(video), 1, 1, 1, DIM)),
        "audio": tf.constant(np.asarray(audio, np.float32).reshape(len(video), 1, DIM, 1)),
        "video_id": tf.constant(video_id, tf.int64),
    }
    if audio_hard is not None:
        hard = np.asarray(audio_hard, np.float32).reshape(len(video), 1, DIM, 1)
        batch["audio_hard"] = tf.constant(hard)
        batch["valid_hard"] = tf.constant(valid_hard, tf.bool)
    return batch


def hinge(distance):
    return np.maximum(MARGIN - distance, 0.0) ** 2


def distance(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)


RNG = np.random.default_rng(0)
VIDEO = RNG.normal(0.0, 0.4, (4, DIM))
AUDIO = VIDEO + RNG.normal(0.0, 0.15, (4, DIM))  # Close to their video: positives.


def compute(objective, batch, training=True, step=0):
    loss, logs = objective.compute(
        identity_towers(), batch, training=training, step=tf.constant(step, tf.int64)
    )
    return float(loss), logs


def counts(metric):
    return float(metric.pos_count.numpy()), float(metric.neg_count.numpy())


def test_contrastive_loss_matches_a_hand_computation():
    objective = ContrastiveSync(margin=MARGIN, normalize=False)
    loss, logs = compute(objective, make_batch(VIDEO, AUDIO, [1, 2, 3, 4]))
    positives = distance(VIDEO, AUDIO)
    easy = distance(VIDEO, np.roll(AUDIO, -1, axis=0))  # Next example's audio.
    expected = (np.sum(positives**2) + np.sum(hinge(easy))) / (2 * 4)
    assert np.sum(hinge(easy)) > 0  # The hinge is active: the test can fail.
    assert loss == pytest.approx(expected, rel=1e-5)
    # Accuracy: in sync when d < margin / 2.
    correct_pos = np.mean(positives < 0.5)
    correct_neg = np.mean(easy >= 0.5)
    assert float(objective.accuracy.result()) == pytest.approx(0.5 * (correct_pos + correct_neg))
    assert float(logs["curriculum/easy"]) == 1.0
    assert int(logs["curriculum/stage"]) == 0


def test_easy_partner_from_the_same_video_is_dropped():
    objective = ContrastiveSync(margin=MARGIN, normalize=False)
    # Examples 0 and 1 are clips of the same video: 0's easy negative would be 1's audio.
    loss, _ = compute(objective, make_batch(VIDEO, AUDIO, [7, 7, 8, 9]))
    positives = distance(VIDEO, AUDIO)
    easy = distance(VIDEO, np.roll(AUDIO, -1, axis=0))
    weight = np.array([0.0, 1.0, 1.0, 1.0])
    expected = (np.sum(positives**2) + np.sum(weight * hinge(easy))) / (2 * 4)
    assert hinge(easy)[0] > 0  # Dropping it changes the loss.
    assert loss == pytest.approx(expected, rel=1e-5)
    assert counts(objective.kind_accuracy["easy"]) == (4.0, 3.0)
    assert float(objective.negative_fraction["easy"].result()) == 1.0


def test_invalid_hard_negatives_fall_back_to_easy_and_are_counted_as_easy():
    objective = ContrastiveSync(
        margin=MARGIN, normalize=False, curriculum=ConstantMixture({"hard": 1.0})
    )
    hard = VIDEO + 0.3  # Valid hard negatives: 0.3 * sqrt(3) ~ 0.52 from their video.
    hard[1] = hard[3] = VIDEO[1] * 0  # Garbage where invalid: never used.
    valid = [True, False, True, False]
    # Example 3's easy partner (example 0) is another video; example 1's (example 2) too.
    loss, logs = compute(objective, make_batch(VIDEO, AUDIO, [1, 2, 3, 4], hard, valid))
    positives = distance(VIDEO, AUDIO)
    negatives = distance(VIDEO, hard)
    easy = distance(VIDEO, np.roll(AUDIO, -1, axis=0))
    negatives[[1, 3]] = easy[[1, 3]]
    expected = (np.sum(positives**2) + np.sum(hinge(negatives))) / (2 * 4)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert counts(objective.kind_accuracy["hard"]) == (4.0, 2.0)
    assert counts(objective.kind_accuracy["easy"]) == (4.0, 2.0)
    assert float(objective.negative_fraction["hard"].result()) == 0.5
    assert float(objective.negative_fraction["easy"].result()) == 0.5
    assert float(logs["curriculum/hard"]) == 1.0


def test_fallback_to_an_easy_partner_of_the_same_video_is_dropped_not_mislabelled():
    objective = ContrastiveSync(
        margin=MARGIN, normalize=False, curriculum=ConstantMixture({"hard": 1.0})
    )
    valid = [True, False, True, True]
    # Example 1 has no hard negative and its easy partner (example 2) is the same video.
    loss, _ = compute(objective, make_batch(VIDEO, AUDIO, [1, 2, 2, 4], VIDEO + 0.3, valid))
    positives = distance(VIDEO, AUDIO)
    negatives = distance(VIDEO, VIDEO + 0.3)
    weight = np.array([1.0, 0.0, 1.0, 1.0])
    expected = (np.sum(positives**2) + np.sum(weight * hinge(negatives))) / (2 * 4)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert counts(objective.kind_accuracy["hard"]) == (4.0, 3.0)
    assert counts(objective.kind_accuracy["easy"]) == (4.0, 0.0)


def test_per_kind_metrics_in_evaluation():
    objective = ContrastiveSync(margin=MARGIN, normalize=False, eval_kinds=("easy", "hard"))
    # Positives at distance 0; hard negatives at 0.2 (inside the threshold: wrong);
    # easy negatives far away (right).
    video = np.array([[0, 0, 0], [5, 0, 0], [0, 5, 0], [0, 0, 5]], np.float32)
    hard = video + np.array([0.2, 0, 0], np.float32)
    batch = make_batch(video, video, [1, 2, 3, 4], hard, [True, True, False, True])
    loss, logs = compute(objective, batch, training=False)
    assert logs == {}
    assert float(objective.accuracy.result()) == 1.0  # Easy pairs: the paper's protocol.
    assert float(objective.kind_accuracy["easy"].result()) == 1.0
    # Hard pairs: positives all right, the three valid hard negatives all wrong.
    assert counts(objective.kind_accuracy["hard"]) == (4.0, 3.0)
    assert float(objective.kind_accuracy["hard"].result()) == pytest.approx(0.5)
    expected = (0.0 + 0.0 + 3 * hinge(0.2)) / (3 * 4)  # Easy negatives beyond the margin.
    assert loss == pytest.approx(expected, rel=1e-5)
    names = [m.name for m in objective.reported_metrics(training=False)]
    assert names[:2] == ["sync_accuracy", "sync_accuracy_hard"]
    # Training reports the kinds the curriculum (easy only, by default) can draw.
    train_names = [m.name for m in objective.reported_metrics(training=True)]
    assert train_names[:3] == ["sync_accuracy", "sync_accuracy_easy", "negatives_easy"]
    assert not {"sync_accuracy_hard", "negatives_hard"} & set(train_names)


def test_training_reports_the_kinds_the_curriculum_can_draw():
    curriculum = StepSwitch([10], [{"easy": 1.0}, {"easy": 0.5, "super_hard": 0.5}])
    objective = ContrastiveSync(curriculum=curriculum, eval_kinds=NEGATIVE_TYPES)
    names = [m.name for m in objective.reported_metrics(training=True)]
    assert [n for n in names if n.startswith("sync_accuracy_")] == [
        "sync_accuracy_easy",
        "sync_accuracy_super_hard",
    ]
    assert [n for n in names if n.startswith("negatives_")] == [
        "negatives_easy",
        "negatives_super_hard",
    ]


def test_accuracy_of_a_kind_without_negatives_is_nan_not_positive_only():
    objective = ContrastiveSync(margin=MARGIN, normalize=False)  # draws easy only
    compute(objective, make_batch(VIDEO, AUDIO, [1, 2, 3, 4], VIDEO + 0.3, [True] * 4))
    hard = objective.kind_accuracy["hard"]
    assert counts(hard) == (4.0, 0.0)  # four positives seen, no hard negative
    assert np.isnan(float(hard.result()))  # not 1.0, the positives' accuracy alone
    pos_right = np.mean(distance(VIDEO, AUDIO) < MARGIN / 2)
    neg_right = np.mean(distance(VIDEO, np.roll(AUDIO, -1, axis=0)) >= MARGIN / 2)
    easy = float(objective.kind_accuracy["easy"].result())
    assert easy == pytest.approx(0.5 * (pos_right + neg_right))


def test_get_config_keeps_the_curriculum():
    curriculum = StepSwitch([5, 9], [{"easy": 1.0}, {"easy": 0.75, "hard": 0.25}, {"hard": 1}])
    objective = ContrastiveSync(margin=0.7, curriculum=curriculum, seed=5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(objective))
    assert isinstance(restored.curriculum, StepSwitch)
    assert restored.curriculum.get_config() == curriculum.get_config()
    for step in (0, 5, 9):
        np.testing.assert_array_equal(
            restored.curriculum.mixture(tf.constant(step)), curriculum.mixture(tf.constant(step))
        )
    assert (restored.margin, restored.seed) == (0.7, 5)


def test_loss_is_divided_by_the_global_count_and_an_empty_share_is_zero():
    objective = ContrastiveSync(margin=MARGIN, normalize=False)
    batch = make_batch(VIDEO, AUDIO, [1, 2, 3, 4])
    local, _ = compute(objective, batch)
    shared, _ = objective.compute(
        identity_towers(),
        batch,
        training=True,
        step=tf.constant(0, tf.int64),
        global_batch=tf.constant(12),
    )
    assert float(shared) == pytest.approx(float(local) * 4 / 12, rel=1e-6)
    empty = {k: v[:0] for k, v in batch.items()}
    loss, _ = objective.compute(
        identity_towers(),
        empty,
        training=False,
        step=tf.constant(0, tf.int64),
        global_batch=tf.constant(1),
    )
    assert float(loss) == 0.0  # not 0/0 = NaN on a replica without examples


def test_easy_negatives_cut_by_the_pipeline_are_used():
    objective = ContrastiveSync(margin=MARGIN, normalize=False)
    batch = make_batch(VIDEO, AUDIO, [1, 2, 3, 4])
    far = VIDEO[::-1] * 0.0 + 3.0
    batch["audio_easy"] = tf.constant(far.reshape(4, 1, DIM, 1).astype(np.float32))
    batch["valid_easy"] = tf.constant([True, False, True, True])
    loss, _ = compute(objective, batch)
    weight = np.array([1.0, 0.0, 1.0, 1.0])
    expected = (
        np.sum(distance(VIDEO, AUDIO) ** 2) + np.sum(weight * hinge(distance(VIDEO, far)))
    ) / (2 * 4)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_kinds_are_drawn_per_example_from_the_mixture_with_stateless_seeds():
    size = 400
    video = np.tile(VIDEO, (size // 4, 1))
    audio = np.tile(AUDIO, (size // 4, 1))
    batch = make_batch(video, audio, np.arange(size), video + 0.3, [True] * size)

    def fraction_hard(step):
        objective = ContrastiveSync(
            normalize=False, curriculum=ConstantMixture({"easy": 0.75, "hard": 0.25})
        )
        loss, _ = compute(objective, batch, step=step)
        return float(objective.negative_fraction["hard"].result()), loss

    first, again, other = fraction_hard(5), fraction_hard(5), fraction_hard(6)
    assert first == again  # Same step, same draws.
    assert first[1] != other[1]  # Another step, other draws.
    assert 0.25 - 0.07 < first[0] < 0.25 + 0.07


@pytest.mark.parametrize("kind", NEGATIVE_TYPES)
def test_metric_names(kind):
    objective = ContrastiveSync()
    assert objective.kind_accuracy[kind].name == f"sync_accuracy_{kind}"


def test_fusion_objective_trains():
    keras.utils.set_random_seed(0)
    video_tower = tiny_video_tower((4, 8, 8, 3), embedding_dim=8)
    audio_tower = tiny_audio_tower((8, 8, 1), embedding_dim=8)
    model = AVTSModel(video_tower, audio_tower, FusionSync(hidden_units=(32,)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    # Each clip has its own brightness and its audio the same loudness: a learnable pairing.
    level = np.linspace(0.0, 1.0, 8, dtype=np.float32)
    rng = np.random.default_rng(0)
    batch = {
        "video": rng.uniform(size=(8, 4, 8, 8, 3)) * level[:, None, None, None, None],
        "audio": rng.uniform(size=(8, 8, 8, 1)) * level[:, None, None, None],
        "video_id": np.arange(8, dtype=np.int64),
    }
    batch["video"] = batch["video"].astype(np.float32)
    batch["audio"] = batch["audio"].astype(np.float32)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    head_before = [w.numpy().copy() for w in model.objective.head.weights]
    history = model.fit(dataset, steps_per_epoch=10, epochs=6, verbose=0).history
    assert history["loss"][0] == pytest.approx(np.log(2.0), abs=0.1)  # Chance at start.
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["sync_accuracy"][-1] > 0.9
    head_after = [w.numpy() for w in model.objective.head.weights]
    assert any(not np.allclose(a, b) for a, b in zip(head_before, head_after, strict=True))


def test_the_task_scores_the_kinds_evaluation_asks_for():
    """``avts-eval-sync`` asks the task which kinds it knows and for a copy scoring them."""
    from avts_tf.errors import UserError
    from avts_tf.tasks.sync.samplers import HardNegativeSampler

    trained = HardNegativeSampler(min_gap_s=0.25)
    objective = ContrastiveSync(margin=MARGIN, negatives={"hard": trained})
    assert objective.negative_kinds == NEGATIVE_TYPES
    scoring = objective.scoring(["super_hard", "hard"])
    assert scoring.eval_kinds == ("easy", "hard", "super_hard")
    assert scoring.negatives["hard"].min_gap_s == 0.25  # the run's own sampler
    assert set(scoring.negatives) == {"hard", "super_hard"} and scoring.margin == MARGIN
    assert objective.scoring().eval_kinds == NEGATIVE_TYPES
    with pytest.raises(UserError) as err:
        objective.scoring(["easy", "medium"])
    assert str(err.value) == ("unknown negative kind(s) medium; valid: easy, hard, super_hard")
