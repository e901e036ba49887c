"""The fast drop-in layers match the stock Keras layers they replace."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from avts_tf.backbones import common, torch_param_count
from avts_tf.backbones.layers import (
    FusedBatchNormalization,
    UnfusedZeroPadding2D,
    UnfusedZeroPadding3D,
    VideoConv3D,
)
from avts_tf.registry import BACKBONES

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "kernel, strides",
    [
        ((1, 3, 3), (1, 2, 2)),
        ((1, 3, 3), (1, 1, 1)),
        ((1, 1, 1), (1, 2, 2)),
        ((3, 3, 3), (2, 2, 2)),
    ],
)
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_video_conv3d_matches_conv3d(kernel, strides, padding):
    x = RNG.standard_normal((2, 3, 9, 10, 3)).astype("float32")
    ref = keras.layers.Conv3D(4, kernel, strides, padding=padding, use_bias=False)
    fast = VideoConv3D(4, kernel, strides, padding=padding, use_bias=False)
    ref.build(x.shape)
    fast.build(x.shape)
    fast.set_weights(ref.get_weights())
    assert fast.kernel.shape == ref.kernel.shape
    np.testing.assert_allclose(fast(x), ref(x), atol=1e-5)
    inputs = keras.Input((None, None, None, 3))  # dynamic shapes take the same path
    np.testing.assert_allclose(keras.Model(inputs, fast(inputs))(x), ref(x), atol=1e-5)


def test_video_conv3d_gradients_match():
    x = tf.constant(RNG.standard_normal((2, 3, 8, 8, 4)).astype("float32"))
    ref = keras.layers.Conv3D(5, (1, 3, 3), (1, 2, 2), padding="same", use_bias=False)
    fast = VideoConv3D(5, (1, 3, 3), (1, 2, 2), padding="same", use_bias=False)
    ref.build(x.shape)
    fast.build(x.shape)
    fast.set_weights(ref.get_weights())
    grads = []
    for layer in (ref, fast):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) ** 2)
        grads.append(tape.gradient(loss, [x, layer.kernel]))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def _bn_pair():
    ref = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9)
    fast = FusedBatchNormalization(epsilon=1e-5, momentum=0.9)
    return ref, fast


def test_fused_batch_norm_training_matches():
    x = tf.constant(RNG.standard_normal((4, 3, 5, 6, 7)).astype("float32") * 3 + 1)
    ref, fast = _bn_pair()
    outs, grads = [], []
    for layer in (ref, fast):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y**3)
        outs.append(y)
        grads.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-5)
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(fast.moving_mean, ref.moving_mean, atol=1e-6)
    # PyTorch-style: the moving variance takes the unbiased batch variance.
    n = x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3]
    expected = 0.9 + (ref.moving_variance.numpy() - 0.9) * n / (n - 1)
    np.testing.assert_allclose(fast.moving_variance, expected, rtol=1e-5)


def test_fused_batch_norm_inference_is_stock():
    x = RNG.standard_normal((2, 4, 3)).astype("float32")
    ref, fast = _bn_pair()
    ref.build(x.shape)
    fast.build(x.shape)
    weights = [RNG.random(3).astype("float32") + 0.5 for _ in range(4)]
    ref.set_weights(weights)
    fast.set_weights(weights)
    np.testing.assert_array_equal(fast(x, training=False), ref(x, training=False))


def test_fused_batch_norm_bfloat16_input():
    layer = FusedBatchNormalization(dtype="mixed_bfloat16")
    y = layer(tf.ones((2, 3, 4), tf.bfloat16) * tf.range(4, dtype=tf.bfloat16), training=True)
    assert y.dtype == tf.bfloat16 and y.shape == (2, 3, 4)


def test_stock_layers_have_identical_weights():
    kwargs = {"input_shape": (4, 32, 32, 3), "width": 8, "depths": (1, 1, 1, 1)}
    fast = BACKBONES.build("mc3_18", **kwargs)
    with common.stock_keras_layers():
        stock = BACKBONES.build("mc3_18", **kwargs)
    fast_kinds = FusedBatchNormalization | VideoConv3D | UnfusedZeroPadding3D
    assert not any(isinstance(la, fast_kinds) for la in stock.layers)
    assert any(isinstance(la, VideoConv3D) for la in fast.layers)
    assert [w.shape for w in fast.weights] == [w.shape for w in stock.weights]
    assert torch_param_count(fast) == torch_param_count(stock)
    stock.set_weights(fast.get_weights())
    x = RNG.standard_normal((2, 4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(fast(x), stock(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "cls, stock, shape, padding",
    [
        (
            UnfusedZeroPadding3D,
            keras.layers.ZeroPadding3D,
            (2, 3, 5, 6, 2),
            ((1, 1), (3, 3), (2, 0)),
        ),
        (UnfusedZeroPadding2D, keras.layers.ZeroPadding2D, (2, 5, 6, 2), ((3, 3), (1, 2))),
    ],
)
def test_unfused_zero_padding_is_stock_zero_padding(cls, stock, shape, padding):
    x = RNG.standard_normal(shape).astype("float32")
    layer = cls(padding)
    np.testing.assert_array_equal(layer(x), stock(padding)(x))
    assert layer.get_config() == {**stock(padding).get_config(), "name": layer.name}
    inputs = keras.Input((None,) * (len(shape) - 2) + (2,))  # dynamic shapes
    np.testing.assert_array_equal(keras.Model(inputs, cls(padding)(inputs))(x), layer(x))
    mixed = cls(padding, dtype="mixed_bfloat16")(x)
    assert mixed.dtype == tf.bfloat16
    np.testing.assert_array_equal(mixed, tf.cast(layer(x), tf.bfloat16))


TRAIN_STEP_SCRIPT = """
import keras, numpy as np, tensorflow as tf
from avts_tf.registry import BACKBONES
from avts_tf.backbones import video_resnet  # noqa: F401
tower = BACKBONES.build("mc3_18", input_shape=(4, 32, 32, 3), width=4, depths=(1, 1, 1, 1))
optimizer = keras.optimizers.SGD(0.1)
x = tf.constant(np.random.default_rng(0).random((2, 4, 32, 32, 3), np.float32))
@tf.function
def step():
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tower(x, training=True) ** 2)
    optimizer.apply(tape.gradient(loss, tower.trainable_variables), tower.trainable_variables)
    return loss
step()
print("stepped")
"""


def test_a_train_step_of_a_tower_with_strided_convs_is_fully_optimized():
    """Grappler's remapper rewrites the whole step of a tower with padded strided convs:
    no ``remapper failed`` line is logged (a fused ``Pad`` would make it drop every
    rewrite)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_STEP_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0 and "stepped" in done.stdout, done.stderr[-2000:]
    assert "remapper failed" not in done.stderr, done.stderr[-2000:]
