"""Drop-in Keras layers that run video convolutions and BatchNorm with faster CPU kernels.

Both keep the weights, weight shapes and config of the layer they subclass, so models,
checkpoints and parameter counts are unchanged; only the kernels called differ.

* :class:`VideoConv3D` is a ``Conv3D`` that computes ``(1, kh, kw)`` kernels (no
  temporal extent or stride) as a Conv2D over frames folded into the batch, which runs
  faster than ``Conv3D`` at MC3 shapes (``docs/performance.md``).
  Other kernels stay ``Conv3D``: with oneDNN it beats the 2D decompositions we tried.
* :class:`FusedBatchNormalization` is a ``BatchNormalization`` whose training step uses
  TensorFlow's fused kernel (one pass for statistics, normalisation and the moving
  average update) instead of Keras 3's unfused moments + arithmetic.
* :class:`UnfusedZeroPadding2D` / :class:`UnfusedZeroPadding3D` pad as TensorFlow's
  ``PadV2`` op instead of ``Pad``. Grappler's remapper fuses a ``Pad`` into the
  convolution after it; in a train step the convolution's gradient still reads the
  removed ``Pad``'s shape, the rewrite fails, TensorFlow logs ``E... remapper failed:
  INVALID_ARGUMENT: Mutation::Apply error`` and drops every remapper rewrite of the step.
  ``PadV2`` is not fused, so the other rewrites stay and the log stays clean.

On CPU the largest lever is outside these layers: TensorFlow enables oneDNN by default
only on CPUs with AVX-512 class features; elsewhere set ``TF_ENABLE_ONEDNN_OPTS=1`` before
importing TensorFlow (measurements: ``docs/performance.md``).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="avts_tf")
class VideoConv3D(keras.layers.Conv3D):
    """``Conv3D`` that runs ``(1, kh, kw)`` kernels as a Conv2D over folded frames.

    Same weights (kernel ``(kt, kh, kw, cin, cout)``), config and outputs as
    ``keras.layers.Conv3D``.
    """

    def _fast_path(self) -> bool:
        return (
            self.data_format == "channels_last"
            and self.groups == 1
            and tuple(self.dilation_rate) == (1, 1, 1)
            and self.padding in ("same", "valid")
        )

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        """A Conv2D over ``(B * T, H, W, C)`` for ``(1, kh, kw)`` kernels, else ``Conv3D``."""
        if self._fast_path() and self.kernel_size[0] == 1 and self.strides[0] == 1:
            kernel_2d = tf.reshape(kernel, kernel.shape[1:])
            return _conv_frames(inputs, kernel_2d, self.strides[1:], self.padding.upper())
        return super().convolution_op(inputs, kernel)


def _conv_frames(x: tf.Tensor, kernel: tf.Tensor, strides: tuple[int, int], pad: str) -> tf.Tensor:
    """A ``(1, kh, kw)`` conv: Conv2D over ``(B * T, H, W, C)``."""
    shape = tf.shape(x)
    b, t = shape[0], shape[1]
    y = tf.nn.conv2d(tf.reshape(x, tf.concat([[-1], shape[2:]], 0)), kernel, strides, pad)
    return tf.reshape(y, tf.concat([[b, t], tf.shape(y)[1:]], 0))


@keras.saving.register_keras_serializable(package="avts_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``BatchNormalization`` whose training call uses TensorFlow's fused kernel.

    Channels-last only (``axis=-1``) and without masks, renorm or synchronisation;
    otherwise, and in inference, it is exactly ``keras.layers.BatchNormalization``.
    Like PyTorch (and Keras 2), the moving variance is updated with the unbiased
    batch variance; the batch itself is normalised with the biased one.
    """

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        """Normalises ``inputs``; fused kernel when training."""
        fusable = (
            training
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and self.axis in (-1, len(inputs.shape) - 1)
            and self.scale
            and self.center
            and len(inputs.shape) >= 3
        )
        if not fusable:
            return super().call(inputs, training=training, mask=mask)
        shape = tf.shape(inputs)
        channels = inputs.shape[-1]
        x = tf.reshape(inputs, tf.stack([shape[0], -1, 1, channels]))
        if x.dtype not in (tf.float32, tf.float16, tf.bfloat16):
            x = tf.cast(x, tf.float32)
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x,
            tf.cast(self.gamma, tf.float32),
            tf.cast(self.beta, tf.float32),
            mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon,
            is_training=True,
            exponential_avg_factor=1.0 - self.momentum,
        )
        self.moving_mean.assign(tf.cast(mean, self.moving_mean.dtype))
        self.moving_variance.assign(tf.cast(variance, self.moving_variance.dtype))
        return tf.cast(tf.reshape(y, shape), self.compute_dtype)


class _PadV2Mixin:
    """Channels-last zero padding as ``PadV2`` (see the module docstring)."""

    def call(self, inputs: Any) -> Any:  # noqa: D102
        if self.data_format != "channels_last":
            return super().call(inputs)
        paddings = [[0, 0], *(list(pair) for pair in self.padding), [0, 0]]
        return tf.raw_ops.PadV2(
            input=inputs, paddings=paddings, constant_values=tf.zeros([], inputs.dtype)
        )


@keras.saving.register_keras_serializable(package="avts_tf")
class UnfusedZeroPadding2D(_PadV2Mixin, keras.layers.ZeroPadding2D):
    """``ZeroPadding2D`` (same config and outputs) that grappler does not fuse."""


@keras.saving.register_keras_serializable(package="avts_tf")
class UnfusedZeroPadding3D(_PadV2Mixin, keras.layers.ZeroPadding3D):
    """``ZeroPadding3D`` (same config and outputs) that grappler does not fuse."""
