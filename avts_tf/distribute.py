"""Choosing a ``tf.distribute`` strategy, and who writes files under it.

* ``TF_CONFIG`` names a cluster: ``MultiWorkerMirroredStrategy`` (one process per
  machine; each uses all of its GPUs, or its CPU).
* GPUs visible: ``MirroredStrategy`` over all of them.
* ``cpu_replicas > 1``: ``MirroredStrategy`` over that many logical CPU devices, to run
  the distributed code path on one machine (tests).
* Otherwise the default single-device strategy.

``make_strategy`` remembers its strategy: the first call decides, later calls with the
same arguments return the same object. Create it before anything else touches
TensorFlow devices (``tools/train.py`` does), since both logical devices and the
collective ops of ``MultiWorkerMirroredStrategy`` are fixed when TensorFlow initialises.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import gin
import tensorflow as tf
from absl import logging

_STRATEGIES: dict[tuple[Any, ...], tf.distribute.Strategy] = {}


def use_logical_cpus(count: int) -> None:
    """Splits the CPU into ``count`` logical devices.

    Raises:
        RuntimeError: If TensorFlow already initialised its devices with another split.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError as error:
        if len(tf.config.list_logical_devices("CPU")) >= count:
            return
        raise RuntimeError(
            f"Cannot split the CPU into {count} logical devices: TensorFlow is already "
            "initialised. Call make_strategy (or use_logical_cpus) first in a fresh process."
        ) from error


def cluster_spec() -> dict[str, list[str]]:
    """The ``cluster`` of ``$TF_CONFIG`` (empty when unset)."""
    config = json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    return {k: list(v) for k, v in config.get("cluster", {}).items()}


@gin.configurable(module="train")
def make_strategy(
    cpu_replicas: int = 0, collective_timeout_s: float | None = 600.0
) -> tf.distribute.Strategy:
    """The strategy of this process (see the module docstring).

    Args:
        cpu_replicas: Logical CPU replicas when no GPU and no ``TF_CONFIG`` is present
            (``0`` or ``1``: a single device).
        collective_timeout_s: Under several workers, a collective (a gradient
            all-reduce) that waits longer than this for a peer fails, so the surviving
            workers of a hung one stop (a worker that exits is noticed at once). It must
            exceed the longest pause of one worker alone (the chief's checkpoint write).
            ``None``: wait for ever.
    """
    cluster = cluster_spec()
    key = (json.dumps(cluster, sort_keys=True), cpu_replicas, collective_timeout_s)
    if key in _STRATEGIES:
        return _STRATEGIES[key]
    if cluster.get("worker") or cluster.get("chief"):
        tasks = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
        logging.info("MultiWorkerMirroredStrategy over %d worker(s).", tasks)
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=collective_timeout_s
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    elif tf.config.list_physical_devices("GPU"):
        strategy = tf.distribute.MirroredStrategy()
        logging.info("MirroredStrategy over %d GPU(s).", strategy.num_replicas_in_sync)
    elif cpu_replicas > 1:
        use_logical_cpus(cpu_replicas)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:cpu_replicas]
        logging.info("MirroredStrategy over %d logical CPU devices.", len(devices))
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        strategy = tf.distribute.get_strategy()
    _STRATEGIES[key] = strategy
    return strategy


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """The place of this process in a (multi-worker) job.

    Attributes:
        task_type: ``"chief"``, ``"worker"`` or ``None`` (single process).
        task_id: Index among tasks of that type.
        num_workers: Processes in the job.
    """

    task_type: str | None = None
    task_id: int = 0
    num_workers: int = 1

    @property
    def is_chief(self) -> bool:
        """Whether this process writes checkpoints, logs and towers to ``model_dir``.

        The ``chief`` task, or worker 0 when the cluster has no chief.
        """
        if self.task_type in (None, "chief"):
            return True
        return self.task_type == "worker" and self.task_id == 0 and not _has_chief()


def _has_chief() -> bool:
    return bool(cluster_spec().get("chief"))


def worker_role(strategy: tf.distribute.Strategy) -> WorkerRole:
    """The role of this process under ``strategy``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return WorkerRole()
    cluster = resolver.cluster_spec().as_dict()
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    return WorkerRole(resolver.task_type, int(resolver.task_id or 0), workers)
