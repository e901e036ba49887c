"""A sync task that records every training clip it decodes (imported from gin by tests).

``objectives.counting_contrastive`` is ``ContrastiveSync`` whose example function also
notes the stateless seed of each example it cuts; ``counter.WriteDecoded`` writes them to
a JSON file when training ends, so a test can count the clips each worker decoded.
"""

from __future__ import annotations

import json

import gin
import keras
import tensorflow as tf

from avts_tf.registry import OBJECTIVES
from avts_tf.tasks.sync.objectives import ContrastiveSync

DECODED: list[list[int]] = []


@OBJECTIVES.register("counting_contrastive")
class CountingContrastive(ContrastiveSync):
    """``ContrastiveSync`` that records the seed of every training example it decodes."""

    def train_example(self, clips, record, seed):  # noqa: D102
        example = super().train_example(clips, record, seed)
        note = tf.py_function(lambda s: DECODED.append(s.numpy().tolist()) or 0, [seed], tf.int32)
        with tf.control_dependencies([note]):
            example["video"] = tf.identity(example["video"])
        return example


@gin.configurable(module="counter")
class WriteDecoded(keras.callbacks.Callback):
    """Writes the seeds of the decoded clips to ``path`` at the end of training."""

    def __init__(self, path: str = gin.REQUIRED) -> None:
        super().__init__()
        self.path = path

    def on_train_end(self, logs=None):  # noqa: D102
        with open(self.path, "w") as f:
            json.dump(DECODED, f)
