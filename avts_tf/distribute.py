"""Choosing a ``tf.distribute`` strategy."""

from __future__ import annotations

import json
import os

import gin
import tensorflow as tf
from absl import logging


def use_logical_cpus(count: int) -> None:
    """Splits the CPU into ``count`` logical devices (before TensorFlow initialises them)."""
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


@gin.configurable(module="train")
def make_strategy(cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """The strategy for this process.

    * ``TF_CONFIG`` set with more than one worker: ``MultiWorkerMirroredStrategy``.
    * GPUs visible: ``MirroredStrategy`` over all of them.
    * ``cpu_replicas > 1``: ``MirroredStrategy`` over that many logical CPU devices
      (for testing the distributed code path on one machine).
    * Otherwise the default (single-device) strategy.
    """
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    workers = tf_config.get("cluster", {}).get("worker", [])
    if len(workers) > 1:
        if cpu_replicas > 1:
            use_logical_cpus(cpu_replicas)
        logging.info("MultiWorkerMirroredStrategy over %d workers.", len(workers))
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        logging.info("MirroredStrategy over %d GPU(s).", len(gpus))
        return tf.distribute.MirroredStrategy()
    if cpu_replicas > 1:
        use_logical_cpus(cpu_replicas)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:cpu_replicas]
        logging.info("MirroredStrategy over %d logical CPU devices.", len(devices))
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()
