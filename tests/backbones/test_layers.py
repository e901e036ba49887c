"""The fast drop-in layers match the stock Keras layers they replace."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from avts_tf.backbones import common, torch_param_count
from avts_tf.backbones.layers import FusedBatchNormalization, VideoConv3D
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
    assert not any(isinstance(la, FusedBatchNormalization | VideoConv3D) for la in stock.layers)
    assert any(isinstance(la, VideoConv3D) for la in fast.layers)
    assert [w.shape for w in fast.weights] == [w.shape for w in stock.weights]
    assert torch_param_count(fast) == torch_param_count(stock)
    stock.set_weights(fast.get_weights())
    x = RNG.standard_normal((2, 4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(fast(x), stock(x), rtol=1e-4, atol=1e-4)
