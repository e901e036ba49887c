"""AVTSModel's train step under each precision policy, with and without XLA."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import tiny_audio_tower, tiny_video_tower

from avts_tf.models import AVTSModel
from avts_tf.tasks.sync.curricula import ConstantMixture
from avts_tf.tasks.sync.objectives import ContrastiveSync, FusionSync

BATCH = 4


def _batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "video": rng.random((BATCH, 4, 32, 32, 3), dtype=np.float32),
        "audio": rng.random((BATCH, 24, 16, 1), dtype=np.float32),
        "audio_hard": rng.random((BATCH, 24, 16, 1), dtype=np.float32),
        "valid_hard": np.array([True, False, True, True]),
        "video_id": np.arange(BATCH, dtype=np.int64),
    }


def _model(precision: str, objective_cls=ContrastiveSync, jit_compile: bool = False) -> AVTSModel:
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    objective = objective_cls(
        curriculum=ConstantMixture({"easy": 0.5, "hard": 0.5}), eval_kinds=("easy", "hard")
    )
    model = AVTSModel(tiny_video_tower(batch_norm=True), tiny_audio_tower(), objective)
    optimizer = keras.optimizers.Adam(1e-3)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, jit_compile=jit_compile)
    return model


@pytest.mark.parametrize(
    "jit_compile", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["graph", "xla"]
)
@pytest.mark.parametrize("precision", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_train_step_is_finite(precision, jit_compile):
    model = _model(precision, jit_compile=jit_compile)
    before = [w.numpy().copy() for w in model.trainable_weights]
    # Dynamic loss scaling starts at 2**15 and skips the first steps, whose float16
    # gradients overflow, halving the scale each time.
    steps = 4 if precision == "mixed_float16" else 1
    data = tf.data.Dataset.from_tensors(_batch()).repeat()
    logs = model.fit(data, steps_per_epoch=steps, verbose=0, shuffle=False).history
    assert np.isfinite(logs["loss"][0]) and logs["loss"][0] > 0
    assert model.jit_compile is jit_compile
    assert int(model.optimizer.iterations.numpy()) >= 1
    after = [w.numpy() for w in model.trainable_weights]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))
    assert all(np.all(np.isfinite(w.numpy())) for w in model.weights)
    assert all(w.dtype == "float32" for w in model.trainable_weights)  # float32 masters
    if precision == "mixed_float16":
        assert float(model.optimizer.dynamic_scale.numpy()) < 2.0**15


@pytest.mark.parametrize("objective_cls", [ContrastiveSync, FusionSync])
@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_loss_is_float32_under_mixed_precision(precision, objective_cls):
    model = _model(precision, objective_cls)
    assert model.video_tower(_batch()["video"]).dtype.name == precision.split("_")[1]
    loss, _ = model.objective.compute(model, _batch(), training=True, step=tf.constant(0))
    assert loss.dtype == tf.float32


def test_mixed_float16_scales_the_loss():
    model = _model("mixed_float16")
    model.optimizer.build(model.trainable_variables)
    loss = tf.constant(0.5)
    assert float(model.optimizer.scale_loss(loss)) == 0.5 * float(model.optimizer.dynamic_scale)
    assert float(model.optimizer.dynamic_scale) > 1.0
