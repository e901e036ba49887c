"""The frame the replica-equality checks share: 2 logical CPU replicas against one device.

Logical devices are fixed when TensorFlow initialises, so each check is a script run in a
fresh process (:func:`run_check`) that calls :func:`strategies` before anything else
touches TensorFlow and prints its differences as JSON.

The reference for towers with per-replica BatchNorm is one device whose towers compute
each half of the batch with its own statistics (:class:`HalfBatchTowers`), the loss over
the whole batch, and the halves' BatchNorm state averaged (:func:`halves_step`): what two
replicas must do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from checks import REPO_ROOT, subprocess_env


def run_check(script: str | Path, *args: str, timeout: float) -> dict:
    """Runs ``python script *args`` in a fresh process; its last stdout line, as JSON."""
    result = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=REPO_ROOT,
        env=subprocess_env(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def strategies():
    """``(one device, 2 logical CPU replicas)``; call first in a check's process."""
    sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]
    from avts_tf.distribute import make_strategy

    mirrored = make_strategy(cpu_replicas=2)  # before TensorFlow initialises
    import tensorflow as tf

    return tf.distribute.get_strategy(), mirrored


def max_diff(a, b) -> float:
    """Largest absolute difference between two equally long lists of arrays."""
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        for x, y in zip(a, b, strict=True)
    )


class HalfBatchTowers:
    """Stands in for the model: each tower runs each half of its input on its own."""

    def __init__(self, model) -> None:
        self.states = []
        self.video_tower = self._wrap(model.video_tower)
        self.audio_tower = self._wrap(model.audio_tower)

    def _wrap(self, tower):
        import tensorflow as tf

        def call(inputs, training=False):
            half = inputs.shape[0] // 2
            outputs, states = [], []
            for part in (inputs[:half], inputs[half:]):
                out, state = tower.stateless_call(
                    [v.value for v in tower.trainable_variables],
                    [tf.convert_to_tensor(v) for v in tower.non_trainable_variables],
                    part,
                    training=training,
                )
                outputs.append(out)
                states.append(state)
            self.states.append((tower, states))
            return tf.concat(outputs, axis=0)

        return call


def _assign_mean(variables, a, b) -> None:
    """The halves' BatchNorm state averaged, as the model averages it over replicas."""
    for variable, x, y in zip(variables, a, b, strict=True):
        variable.assign((x + y) / 2 if "float" in str(variable.dtype) else x)


def halves_step(model, batch: dict) -> float:
    """One step of ``model`` on one device as two replicas take it; its loss.

    For tasks whose loss pairs examples across the batch (gathered over replicas): the
    towers see each half alone, the loss is computed over the whole batch.
    """
    import tensorflow as tf

    tensors = {k: tf.constant(v) for k, v in batch.items()}
    towers = HalfBatchTowers(model)
    with tf.GradientTape() as tape:
        loss, _, *values = model.objective.compute(
            towers,
            tensors,
            training=True,
            step=model.optimizer.iterations,
            global_batch=tf.constant(len(next(iter(batch.values())))),
        )
    grads = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply(grads, model.trainable_variables)
    for tower, (a, b) in towers.states:
        _assign_mean(tower.non_trainable_variables, a, b)
    if values:
        model.objective.after_step(values[0], tf.constant(True))
    return float(loss)


def separate_halves_step(model, batch: dict) -> None:
    """One step of ``model`` on one device as two replicas take it, for tasks whose loss is
    a sum over examples: each half computed alone (its own kinds of negatives and
    statistics), the gradients summed."""
    import tensorflow as tf

    half = len(next(iter(batch.values()))) // 2
    grads, states = None, []
    for part in range(2):
        piece = {k: tf.constant(v[part * half : (part + 1) * half]) for k, v in batch.items()}
        _, _, g, new_state, _ = model._loss_and_gradients(
            piece, tf.constant(2 * half), stateless=True
        )
        grads = g if grads is None else [x + y for x, y in zip(grads, g, strict=True)]
        states.append(new_state)
    model.optimizer.apply(grads, model.trainable_variables)
    _assign_mean(
        model.video_tower.non_trainable_variables + model.audio_tower.non_trainable_variables,
        *states,
    )
