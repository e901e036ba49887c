"""Building blocks shared by the towers: torchvision-style conv/BN helpers and the head.

Every tower ends with :func:`finish`, which applies the optional ``embedding_dim``
projection and ``num_classes`` head and casts the output to float32, so the towers
work under ``mixed_bfloat16`` and ``mixed_float16`` policies.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import keras

from avts_tf.backbones.layers import (
    FusedBatchNormalization,
    UnfusedZeroPadding2D,
    UnfusedZeroPadding3D,
    VideoConv3D,
)

# torchvision's BatchNorm defaults: eps 1e-5, momentum 0.1 (PyTorch) == 0.9 (Keras).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

_FAST_KERNELS = contextvars.ContextVar("avts_tf_fast_kernels", default=True)


@contextlib.contextmanager
def stock_keras_layers() -> Iterator[None]:
    """Within this block towers are built from stock ``Conv3D``/``BatchNormalization``.

    By default they use :class:`~avts_tf.backbones.layers.VideoConv3D` and
    :class:`~avts_tf.backbones.layers.FusedBatchNormalization`, which hold identical
    weights but run faster kernels. Benchmarks use this to measure the difference.
    """
    token = _FAST_KERNELS.set(False)
    try:
        yield
    finally:
        _FAST_KERNELS.reset(token)


def batch_norm(name: str) -> keras.layers.Layer:
    """A channels-last BatchNormalization with torchvision's defaults."""
    cls = FusedBatchNormalization if _FAST_KERNELS.get() else keras.layers.BatchNormalization
    return cls(axis=-1, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _per_dim(value: Sequence[int] | int, rank: int) -> tuple[int, ...]:
    return (value,) * rank if isinstance(value, int) else tuple(value)


def conv(
    rank: int,
    filters: int,
    kernel_size: Sequence[int] | int,
    strides: Sequence[int] | int = 1,
    name: str | None = None,
    padding: str = "same",
) -> keras.layers.Layer:
    """A bias-free Conv2D/Conv3D layer, as used before BatchNorm.

    Args:
        rank: 2 or 3 spatial dimensions.
        filters: Output channels.
        kernel_size: Kernel size (int or per-dimension tuple).
        strides: Strides (int or per-dimension tuple).
        name: Layer name.
        padding: ``"same"`` or ``"valid"`` (see :func:`torch_conv` for PyTorch's padding).
    """
    conv3d = VideoConv3D if _FAST_KERNELS.get() else keras.layers.Conv3D
    cls = {2: keras.layers.Conv2D, 3: conv3d}[rank]
    return cls(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )


def torch_conv(
    x: keras.KerasTensor,
    filters: int,
    kernel_size: Sequence[int] | int,
    strides: Sequence[int] | int = 1,
    name: str = "conv",
) -> keras.KerasTensor:
    """A bias-free conv padded as PyTorch's ``padding=kernel_size // 2`` (odd kernels).

    With stride 1 this is ``same`` padding. With stride 2 on an even size, ``same``
    pads ``k // 2 - 1`` before and ``k // 2`` after (0/1 for 3, 2/3 for 7), PyTorch
    ``k // 2`` on both sides: the outputs have the same shape but sample positions one
    input pixel apart, so a strided conv here pads explicitly (a ``ZeroPadding`` layer
    named ``{name}_pad``; :class:`~avts_tf.backbones.layers.UnfusedZeroPadding3D` or its 2D
    form, which grappler leaves unfused) and then convolves ``valid``. The conv layer is
    named ``name``.

    Args:
        x: Input, ``(B, ..., C)``; its rank sets Conv2D or Conv3D.
        filters: Output channels.
        kernel_size: Odd kernel size (int or per-dimension tuple).
        strides: Strides (int or per-dimension tuple).
        name: Conv layer name.
    """
    rank = len(x.shape) - 2
    kernel, stride = _per_dim(kernel_size, rank), _per_dim(strides, rank)
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"torch_conv needs odd kernels, got {kernel}")
    if all(s == 1 for s in stride) or all(k == 1 for k in kernel):
        return conv(rank, filters, kernel, stride, name=name)(x)  # same == PyTorch's here
    if _FAST_KERNELS.get():
        pad_cls = {2: UnfusedZeroPadding2D, 3: UnfusedZeroPadding3D}[rank]
    else:
        pad_cls = {2: keras.layers.ZeroPadding2D, 3: keras.layers.ZeroPadding3D}[rank]
    x = pad_cls(tuple((k // 2, k // 2) for k in kernel), name=f"{name}_pad")(x)
    return conv(rank, filters, kernel, stride, name=name, padding="valid")(x)


def conv_bn(
    x: keras.KerasTensor,
    filters: int,
    kernel_size: Sequence[int] | int,
    strides: Sequence[int] | int = 1,
    relu: bool = True,
    name: str = "conv",
    padding: str = "same",
) -> keras.KerasTensor:
    """Conv (no bias) -> BN -> optional ReLU; rank follows the input (4D or 5D).

    ``padding`` is ``"same"`` (TensorFlow's) or ``"torch"`` (:func:`torch_conv`).
    """
    if padding == "torch":
        x = torch_conv(x, filters, kernel_size, strides, name=f"{name}_conv")
    else:
        x = conv(len(x.shape) - 2, filters, kernel_size, strides, f"{name}_conv", padding)(x)
    x = batch_norm(f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def finish(
    x: keras.KerasTensor,
    inputs: keras.KerasTensor,
    name: str,
    embedding_dim: int | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """Global-average-pool, optional projection and head, float32 output, wrap as a Model.

    Args:
        x: Feature map, ``(B, ..., C)`` channels last.
        inputs: The model's input tensor.
        name: Model name.
        embedding_dim: If given, a Dense projection to this size after pooling.
        num_classes: If given, a final linear Dense head with this many outputs.

    Returns:
        A functional ``keras.Model`` named ``name`` with a ``(B, D)`` float32 output.
    """
    pool = {
        3: keras.layers.GlobalAveragePooling1D,
        4: keras.layers.GlobalAveragePooling2D,
        5: keras.layers.GlobalAveragePooling3D,
    }[len(x.shape)]
    x = pool(name="avgpool")(x)
    if embedding_dim is not None:
        x = keras.layers.Dense(embedding_dim, name="embedding")(x)
    if num_classes is not None:
        x = keras.layers.Dense(num_classes, name="fc")(x)
    x = keras.layers.Activation("linear", dtype="float32", name="output")(x)
    return keras.Model(inputs, x, name=name)


def video_input(input_shape: Sequence[int | None]) -> keras.KerasTensor:
    """The ``video`` input, ``(T, H, W, 3)``."""
    if len(input_shape) != 4:
        raise ValueError(f"video input_shape must be (T, H, W, C), got {tuple(input_shape)}")
    return keras.Input(shape=tuple(input_shape), name="video")


def audio_input(input_shape: Sequence[int | None]) -> keras.KerasTensor:
    """The ``audio`` input, ``(frames, mel_bins, 1)``."""
    if len(input_shape) != 3:
        raise ValueError(
            f"audio input_shape must be (frames, mel_bins, C), got {tuple(input_shape)}"
        )
    return keras.Input(shape=tuple(input_shape), name="audio")


def torch_param_count(model: keras.Model) -> int:
    """Parameter count as PyTorch reports it: ``model.count_params()`` minus BN moving stats.

    ``sum(p.numel() for p in model.parameters())`` in PyTorch counts BatchNorm's gamma
    and beta but not its running mean/variance (buffers), while Keras counts all four.
    Subtracting every BatchNormalization layer's ``moving_mean`` and ``moving_variance``
    makes the two numbers comparable.
    """
    moving = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.built:
            moving += int(layer.moving_mean.shape[0]) + int(layer.moving_variance.shape[0])
    return int(model.count_params()) - moving
