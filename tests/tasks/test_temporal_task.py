"""The temporal task end to end on the tiny set: heads, contrastive queue, state hook."""

from __future__ import annotations

import keras
import numpy as np
from tiny import SPEC, tiny_audio_tower, tiny_video_tower

from avts_tf.data import pipeline
from avts_tf.models import AVTSModel
from avts_tf.tasks.temporal.task import TemporalContrastive
from avts_tf.tasks.temporal.views import ViewSpec

METRICS = {"speed_accuracy_video", "speed_accuracy_audio", "direction_accuracy_video",
           "direction_accuracy_audio", "order_accuracy_video", "order_accuracy_audio",
           "order_accuracy_cross", "contrastive_loss"}


def _task(queue_size=8):
    return TemporalContrastive(view_spec=ViewSpec(speeds=(1, 2)), projection_dim=8,
                               hidden_units=8, queue_size=queue_size)


def test_trains_fills_the_queue_and_evaluates(tiny_prepared):
    keras.utils.set_random_seed(0)
    task = _task(queue_size=8)
    model = AVTSModel(tiny_video_tower(), tiny_audio_tower(), task)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    data = pipeline.train_dataset(tiny_prepared, 2, task=task, spec=SPEC, seed=1)
    history = model.fit(data, steps_per_epoch=5, epochs=1, verbose=0).history
    assert METRICS <= set(history)
    assert np.isfinite(history["loss"][0])
    queue, ids, filled = (v.numpy() for v in task.queues["video"])
    assert int(filled) == 8  # 5 steps of 2 examples, capped at the queue's 8
    assert np.allclose(np.linalg.norm(queue, axis=1), 1.0, atol=1e-5)  # unit keys
    assert len(set(ids.tolist()) - {0}) >= 2
    results = model.evaluate(
        pipeline.eval_dataset(tiny_prepared, 2, task=task, spec=SPEC, clips_per_video=2),
        return_dict=True, verbose=0)
    assert METRICS <= set(results)


def test_config_round_trip():
    task = _task()
    rebuilt = TemporalContrastive.from_config(task.get_config())
    assert rebuilt.view_spec == task.view_spec
    assert rebuilt.get_config() == task.get_config()
