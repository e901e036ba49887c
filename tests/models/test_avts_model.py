"""AVTSModel's train step under each precision policy, with and without XLA."""

from __future__ import annotations

import os

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


def test_a_saved_model_loads_compiled_and_trains_on_as_the_original(tmp_path):
    """``model.save`` / ``keras.models.load_model``: the optimizer and its Adam moments come
    back with the model (Keras skips ``compile_from_config`` for a model with its own
    ``compile``, so the model restores them itself)."""
    import warnings

    model = _model("float32", jit_compile=True)
    data = tf.data.Dataset.from_tensors(_batch()).repeat()
    model.fit(data, steps_per_epoch=2, verbose=0, shuffle=False)
    model.save(tmp_path / "model.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(tmp_path / "model.keras")
    assert not [w for w in caught if "compile()" in str(w.message)]
    assert loaded.compiled and loaded.jit_compile is True
    assert int(loaded.optimizer.iterations.numpy()) == 2
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=saved.path)
    for m in (model, loaded):
        m.fit(data, steps_per_epoch=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)


def test_a_saved_model_loads_in_a_new_process_after_importing_avts_tf_models(tmp_path):
    """``import avts_tf.models`` is enough to load a saved model: the towers' own layers
    (``VideoConv3D``) and the built-in tasks are registered with Keras by then."""
    import subprocess
    import sys

    from avts_tf.backbones import video_resnet  # noqa: F401  (registers mc3_18)
    from avts_tf.registry import BACKBONES

    keras.utils.set_random_seed(0)
    video = BACKBONES.build(
        "mc3_18", input_shape=(4, 32, 32, 3), width=4, depths=(1, 1, 1, 1), embedding_dim=8
    )
    model = AVTSModel(video, tiny_audio_tower(), ContrastiveSync(margin=1.0))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(
        tf.data.Dataset.from_tensors(_batch()).repeat(), steps_per_epoch=1, verbose=0, shuffle=False
    )
    model.save(tmp_path / "model.keras")
    script = (
        "import sys, keras, numpy as np\n"
        "import avts_tf.models\n"
        "m = keras.models.load_model(sys.argv[1])\n"
        "print(type(m.objective).__name__, int(m.optimizer.iterations.numpy()),\n"
        "      float(sum(np.abs(np.asarray(w)).sum() for w in m.weights)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "model.keras")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    total = float(sum(np.abs(w.numpy()).sum() for w in model.weights))
    name, iterations, loaded_total = result.stdout.split()
    assert (name, iterations) == ("ContrastiveSync", "1")
    assert float(loaded_total) == pytest.approx(total, rel=1e-6)
