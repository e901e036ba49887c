"""Several tasks trained together in one step: a weighted sum of their losses."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from avts_tf.registry import OBJECTIVES
from avts_tf.settings import number_setting
from avts_tf.tasks.base import Batch, Task, unpack_compute


@OBJECTIVES.register("multi")
@keras.saving.register_keras_serializable(package="avts_tf")
class MultiTask(Task):
    """A weighted sum of tasks sharing the towers, each with its own examples.

    Every record gives one example to each task (``batch[name]`` is task ``name``'s
    batch), so all tasks see the same videos in a step; the loss is
    ``sum_k weights[k] * loss_k``. Logs are prefixed ``<name>/``; metric names must differ
    between tasks. Each task's state is updated by its own ``after_step``.

    Args:
        tasks: Tasks keyed by name, e.g. ``{"sync": @objectives.contrastive(), ...}``.
        weights: Loss weight of each task (default 1.0 each).
        headline: Metric printed last (default: the first task's headline).
        **kwargs: Passed to ``keras.layers.Layer``.

    Raises:
        ValueError: No tasks, weights of unknown tasks, or two tasks with a metric name.
    """

    def __init__(
        self,
        tasks: Mapping[str, Task],
        weights: Mapping[str, float] | None = None,
        headline: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not tasks:
            raise ValueError("MultiTask needs at least one task.")
        self.tasks = {name: _as_task(task) for name, task in tasks.items()}
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(self.tasks))
        if unknown:
            raise ValueError(
                f"weights name unknown tasks {unknown}; tasks: {', '.join(self.tasks)}."
            )
        self.weights_by_task = {
            name: number_setting(f"weights[{name!r}]", weights.get(name, 1.0), zero_allowed=True)
            for name in self.tasks
        }
        seen: dict[str, str] = {}
        for name, task in self.tasks.items():
            for metric in {m.name for t in (True, False) for m in task.reported_metrics(t)}:
                if metric in seen:
                    raise ValueError(
                        f"tasks {seen[metric]!r} and {name!r} both report "
                        f"{metric!r}; give their metrics distinct names."
                    )
                seen[metric] = name
        self.headline = headline or next(iter(self.tasks.values())).headline

    def train_example(self, clips, record, seed):  # noqa: D102
        seeds = tf.random.experimental.stateless_split(seed, len(self.tasks))
        return {
            name: task.train_example(clips, record, seeds[i])
            for i, (name, task) in enumerate(self.tasks.items())
        }

    def eval_example(self, clips, record, seed, clip_index, num_clips):  # noqa: D102
        seeds = tf.random.experimental.stateless_split(seed, len(self.tasks))
        return {
            name: task.eval_example(clips, record, seeds[i], clip_index, num_clips)
            for i, (name, task) in enumerate(self.tasks.items())
        }

    def batch_examples(self, batch, training):  # noqa: D102
        return {
            name: task.batch_examples(batch[name], training) for name, task in self.tasks.items()
        }

    def build_head(self, video_dim, audio_dim):  # noqa: D102
        for task in self.tasks.values():
            task.build_head(video_dim, audio_dim)

    def compute(self, model, batch, training, step, global_batch=None):  # noqa: D102
        total = tf.constant(0.0, tf.float32)
        logs: Batch = {}
        values: Batch = {}
        for name, task in self.tasks.items():
            loss, task_logs, task_values = unpack_compute(
                task.compute(model, batch[name], training, step, global_batch)
            )
            total += self.weights_by_task[name] * tf.cast(loss, tf.float32)
            logs[f"{name}/loss"] = loss
            logs.update({f"{name}/{key}": value for key, value in task_logs.items()})
            values.update({f"{name}/{key}": value for key, value in task_values.items()})
        return total, logs, values

    @property
    def gathers_over_replicas(self) -> bool:  # noqa: D102
        return any(task.gathers_over_replicas for task in self.tasks.values())

    @property
    def window_multiple(self) -> int:  # noqa: D102
        return max(task.window_multiple for task in self.tasks.values())

    @property
    def batch_multiple(self) -> int:  # noqa: D102
        return math.lcm(*(task.batch_multiple for task in self.tasks.values()))

    def dataset_metrics(self, model, dataset):  # noqa: D102
        results = {}
        for name, task in self.tasks.items():
            results.update(task.dataset_metrics(model, dataset.map(lambda b, n=name: b[n])))
        return results

    def after_step(self, values, applied):  # noqa: D102
        for name, task in self.tasks.items():
            prefix = f"{name}/"
            own = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
            if own:
                task.after_step(own, applied)

    def reported_metrics(self, training):  # noqa: D102
        return [m for task in self.tasks.values() for m in task.reported_metrics(training)]

    def stage(self, step):  # noqa: D102
        return max(task.stage(step) for task in self.tasks.values())

    def parts(self):  # noqa: D102
        return list(self.tasks.values())

    def shared_space(self, model):
        """The first task's that has one (the temporal task's heads beside AVTS)."""
        return next((p for p in (t.shared_space(model) for t in self.tasks.values()) if p), None)

    def sync_task(self):
        """The first task that scores synchronization."""
        return next((s for s in (t.sync_task() for t in self.tasks.values()) if s), None)

    def get_config(self) -> dict:  # noqa: D102
        config = super().get_config()
        config.update(
            {
                "tasks": {
                    name: keras.saving.serialize_keras_object(task)
                    for name, task in self.tasks.items()
                },
                "weights": dict(self.weights_by_task),
                "headline": self.headline,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> MultiTask:  # noqa: D102
        config = dict(config)
        config["tasks"] = {
            name: keras.saving.deserialize_keras_object(task)
            for name, task in config["tasks"].items()
        }
        return cls(**config)


def _as_task(task: Task | Any) -> Task:
    # gin passes factories when the recipe writes @objectives.x without "()".
    task = task() if callable(task) and not isinstance(task, Task) else task
    if not isinstance(task, Task):
        raise ValueError(f"MultiTask tasks must be Task instances, got {type(task).__name__}.")
    return task
