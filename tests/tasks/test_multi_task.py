"""MultiTask: several tasks with their own examples, trained together in one step."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import SPEC, tiny_audio_tower, tiny_video_tower

from avts_tf.data import pipeline
from avts_tf.models import AVTSModel
from avts_tf.tasks.base import Task, global_batch_size
from avts_tf.tasks.multi import MultiTask
from avts_tf.tasks.sync.objectives import ContrastiveSync
from avts_tf.tasks.sync.samplers import HardNegativeSampler
from avts_tf.tasks.temporal.task import TemporalContrastive


@keras.saving.register_keras_serializable(package="tests")
class Backwards(Task):
    """Were the frames reversed? Keeps a count of the examples it trained on."""

    headline = "backwards_accuracy"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.accuracy = keras.metrics.BinaryAccuracy(name="backwards_accuracy", threshold=0.0)

    def build_head(self, video_dim, audio_dim):
        self.head = keras.layers.Dense(1)
        self.head.build((None, video_dim))
        self.seen = self.add_state("seen", ())

    def train_example(self, clips, record, seed):
        example = super().train_example(clips, record, seed)
        backwards = (
            tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 7)) < 0.5
        )
        example["video"] = tf.where(backwards, example["video"][::-1], example["video"])
        example["backwards"] = tf.cast(backwards, tf.float32)
        return example

    def eval_example(self, clips, record, seed, clip_index, num_clips):
        example = super().eval_example(clips, record, seed, clip_index, num_clips)
        example["backwards"] = tf.constant(0.0)
        return example

    def compute(self, model, batch, training, step, global_batch=None):
        if global_batch is None:
            global_batch = global_batch_size(batch)
        logits = self.head(model.video_tower(batch["video"], training=training))[:, 0]
        losses = tf.nn.sigmoid_cross_entropy_with_logits(batch["backwards"], logits)
        self.accuracy.update_state(batch["backwards"], logits)
        loss = tf.reduce_sum(losses) / tf.cast(global_batch, tf.float32)
        return loss, {"mean_logit": tf.reduce_mean(logits)}, {"one": tf.ones_like(logits)}

    def after_step(self, values, applied):
        self.seen.assign_add(tf.where(applied, tf.reduce_sum(values["one"]), 0.0))

    def reported_metrics(self, training):
        return [self.accuracy]


def _multi(weights=None):
    tasks = {
        "sync": ContrastiveSync(negatives={"hard": HardNegativeSampler()}),
        "backwards": Backwards(),
    }
    return MultiTask(tasks, weights=weights or {"sync": 1.0, "backwards": 0.25})


def _model(task):
    keras.utils.set_random_seed(0)
    model = AVTSModel(tiny_video_tower(), tiny_audio_tower(), task)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    return model


def test_each_task_gets_its_own_examples_of_the_same_records(tiny_prepared):
    task = _multi()
    batch = next(iter(pipeline.train_dataset(tiny_prepared, 4, task=task, spec=SPEC, seed=1)))
    assert set(batch) == {"sync", "backwards"}
    assert {"audio_hard", "valid_hard", "audio_easy"} <= set(batch["sync"])
    assert "backwards" in batch["backwards"] and "audio_hard" not in batch["backwards"]
    np.testing.assert_array_equal(batch["sync"]["video_id"], batch["backwards"]["video_id"])


def test_loss_is_the_weighted_sum_of_the_tasks_losses(tiny_prepared):
    task = _multi()
    model = _model(task)
    batch = next(iter(pipeline.train_dataset(tiny_prepared, 4, task=task, spec=SPEC, seed=1)))
    step = tf.constant(0, tf.int64)
    total, logs, values = task.compute(model, batch, False, step)
    sync_loss, _ = task.tasks["sync"].compute(model, batch["sync"], False, step)
    back_loss, _, _ = task.tasks["backwards"].compute(model, batch["backwards"], False, step)
    expected = float(sync_loss) + 0.25 * float(back_loss)
    assert float(total) == pytest.approx(expected, rel=1e-6)
    assert float(logs["backwards/loss"]) == pytest.approx(float(back_loss), rel=1e-6)
    assert set(values) == {"backwards/one"}


def test_fit_trains_both_tasks_and_runs_each_after_step_hook(tiny_prepared):
    task = _multi()
    model = _model(task)
    data = pipeline.train_dataset(tiny_prepared, 4, task=task, spec=SPEC, seed=1)
    history = model.fit(data, steps_per_epoch=3, epochs=1, verbose=0).history
    assert {"sync_accuracy", "backwards_accuracy", "backwards/loss", "sync/loss"} <= set(history)
    assert float(task.tasks["backwards"].seen.numpy()) == 12.0  # 3 steps x 4 examples
    assert task.headline == "sync_accuracy"


def test_config_round_trip_and_bad_settings():
    task = _multi()
    _model(task)
    rebuilt = MultiTask.from_config(task.get_config())
    assert list(rebuilt.tasks) == ["sync", "backwards"]
    assert rebuilt.weights_by_task == {"sync": 1.0, "backwards": 0.25}
    assert rebuilt.tasks["sync"].get_config()["negatives"] == {"hard": {"min_gap_s": 0.0}}
    with pytest.raises(ValueError, match="tasks 'a' and 'b' both report"):
        MultiTask({"a": ContrastiveSync(), "b": ContrastiveSync()})
    with pytest.raises(ValueError, match="weights name unknown tasks"):
        MultiTask({"a": ContrastiveSync()}, weights={"b": 1.0})
    # The batch must suit every task: the least common multiple of their needs.
    assert (
        MultiTask(
            {"a": ContrastiveSync(), "b": TemporalContrastive(control="unrelated_audio")}
        ).batch_multiple
        == 2
    )
    assert MultiTask({"a": ContrastiveSync(), "b": TemporalContrastive()}).batch_multiple == 1
    # A negative weight would train that task to maximise its loss: it is refused.
    with pytest.raises(ValueError, match=r"^weights\['a'\] must be a number >= 0, got -0.1$"):
        MultiTask({"a": ContrastiveSync()}, weights={"a": -0.1})
