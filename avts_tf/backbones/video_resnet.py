"""Video ResNet-18 family (R3D, MC2, MC3, R(2+1)D), layouts as torchvision's.

Follows ``torchvision/models/video/resnet.py`` layer for layer, channels last:

* stem: ``BasicStem`` (Conv 3x7x7, stride (1, 2, 2)) or ``R2Plus1dStem``
  (Conv 1x7x7 to 45 channels, BN, ReLU, Conv 3x1x1 to ``width``);
* four residual groups of ``BasicBlock`` with ``width * (1, 2, 4, 8)`` channels, the
  first block of groups 2-4 striding by 2;
* a conv type per group: ``"3d"`` (``Conv3DSimple``, 3x3x3), ``"2d"``
  (``Conv3DNoTemporal``, 1x3x3, which never strides in time) or ``"2plus1d"``
  (``Conv2Plus1D``: 1x3x3 -> BN -> ReLU -> 3x1x1, with torchvision's mid-channel count
  ``(cin * cout * 27) // (cin * 9 + 3 * cout)`` computed once per block from
  (inplanes, planes) and reused by both of its convolutions);
* shortcut on a shape change: 1x1x1 conv (no bias) + BN with the conv type's
  downsample stride ((s, s, s), or (1, s, s) for ``"2d"``).

Padding is PyTorch's (``kernel_size // 2`` on both sides of every dimension,
:func:`avts_tf.backbones.common.torch_conv`): stride-1 convs use ``same`` padding,
which is the same for odd kernels, and strided convs pad explicitly (a
``ZeroPadding3D`` layer ``<conv name>_pad``, as
:class:`~avts_tf.backbones.layers.UnfusedZeroPadding3D`) then convolve ``valid``, because ``same``
at stride 2 pads 0 before / 1 after on even sizes (a half-pixel shift against
PyTorch). So torchvision weights give torchvision's outputs at any clip size:
:mod:`avts_tf.backbones.torchvision_import` converts them. Towers saved as ``.keras``
before this keep the padding in their saved config; weights files (``.weights.h5``,
training checkpoints) load into the new towers unchanged, as the padding layers hold no
weights.

Parameter counts (PyTorch convention, see :func:`avts_tf.backbones.common.torch_param_count`)
with ``num_classes=400``: r3d_18 33,371,472; mc2_18 11,400,528; mc3_18 11,695,440;
r2plus1d_18 31,505,325.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from avts_tf.backbones import common
from avts_tf.registry import BACKBONES

DEFAULT_VIDEO_SHAPE = (16, 112, 112, 3)
CONV_TYPES = ("3d", "2d", "2plus1d")

LAYOUTS: dict[str, tuple[tuple[str, ...], str]] = {
    "r3d_18": (("3d",) * 4, "basic"),
    "mc2_18": (("2d",) * 4, "basic"),
    "mc3_18": (("3d", "2d", "2d", "2d"), "basic"),
    "r2plus1d_18": (("2plus1d",) * 4, "r2plus1d"),
}
"""Tower name -> (conv type of each residual group, stem)."""
NORMALIZATION_LAYER = "kinetics_normalization"


def midplanes(inplanes: int, planes: int) -> int:
    """Torchvision's (2+1)D mid-channel count, matching a full 3x3x3 conv's parameters."""
    return (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)


def downsample_stride(conv_type: str, stride: int) -> tuple[int, int, int]:
    """Stride of the shortcut conv (torchvision's ``get_downsample_stride``)."""
    return (1, stride, stride) if conv_type == "2d" else (stride, stride, stride)


def _conv(
    x: keras.KerasTensor, conv_type: str, filters: int, mid: int, stride: int, name: str
) -> keras.KerasTensor:
    """One torchvision ``conv_builder`` call (without the BN that follows it)."""
    if conv_type == "3d":
        return common.torch_conv(x, filters, 3, stride, name=name)
    if conv_type == "2d":
        return common.torch_conv(x, filters, (1, 3, 3), (1, stride, stride), name=name)
    if conv_type == "2plus1d":
        x = common.torch_conv(x, mid, (1, 3, 3), (1, stride, stride), name=f"{name}_s")
        x = common.batch_norm(f"{name}_s_bn")(x)
        x = keras.layers.ReLU(name=f"{name}_s_relu")(x)
        return common.torch_conv(x, filters, (3, 1, 1), (stride, 1, 1), name=f"{name}_t")
    raise ValueError(f"conv_type must be one of {CONV_TYPES}, got {conv_type!r}")


def basic_block(
    x: keras.KerasTensor, planes: int, conv_type: str, stride: int, name: str
) -> keras.KerasTensor:
    """Torchvision's video ``BasicBlock`` (two convs, identity or projection shortcut)."""
    inplanes = int(x.shape[-1])
    mid = midplanes(inplanes, planes)
    shortcut = x
    if stride != 1 or inplanes != planes:
        shortcut = common.torch_conv(
            x, planes, 1, downsample_stride(conv_type, stride), name=f"{name}_downsample_conv"
        )
        shortcut = common.batch_norm(f"{name}_downsample_bn")(shortcut)
    y = _conv(x, conv_type, planes, mid, stride, name=f"{name}_conv1")
    y = common.batch_norm(f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(y, conv_type, planes, mid, 1, name=f"{name}_conv2")
    y = common.batch_norm(f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _stem(x: keras.KerasTensor, stem: str, width: int) -> keras.KerasTensor:
    if stem == "basic":
        return common.conv_bn(x, width, (3, 7, 7), (1, 2, 2), name="stem", padding="torch")
    if stem == "r2plus1d":
        x = common.conv_bn(
            x, 45 * width // 64, (1, 7, 7), (1, 2, 2), name="stem_s", padding="torch"
        )
        return common.conv_bn(x, width, (3, 1, 1), 1, name="stem_t", padding="torch")
    raise ValueError(f"stem must be 'basic' or 'r2plus1d', got {stem!r}")


def video_resnet(
    name: str,
    conv_types: Sequence[str],
    stem: str = "basic",
    input_shape: Sequence[int | None] = DEFAULT_VIDEO_SHAPE,
    width: int = 64,
    depths: Sequence[int] = (2, 2, 2, 2),
    embedding_dim: int | None = None,
    num_classes: int | None = None,
    input_mean_std: tuple[Sequence[float], Sequence[float]] | None = None,
) -> keras.Model:
    """Builds a torchvision-layout video ResNet.

    Args:
        name: Model name.
        conv_types: Conv type of each residual group (``"3d"``, ``"2d"``, ``"2plus1d"``).
        stem: ``"basic"`` or ``"r2plus1d"``.
        input_shape: ``(T, H, W, 3)``; entries may be ``None``.
        width: Channels of the stem and the first group; later groups double.
        depths: Blocks per residual group.
        embedding_dim: Optional projection size after global pooling.
        num_classes: Optional linear head size.
        input_mean_std: Optional per-channel ``(mean, std)``: a ``Normalization`` layer
            (named ``kinetics_normalization``) first computes ``(x - mean) / std``, as
            torchvision's transforms do before its models.

    Returns:
        A functional ``keras.Model`` with input ``"video"`` and a ``(B, D)`` output.
    """
    if len(conv_types) != len(depths):
        raise ValueError(f"{len(conv_types)} conv types for {len(depths)} groups")
    inputs = common.video_input(input_shape)
    x = inputs
    if input_mean_std is not None:
        mean, std = input_mean_std
        x = keras.layers.Normalization(
            mean=list(mean), variance=[s * s for s in std], name=NORMALIZATION_LAYER
        )(x)
    x = _stem(x, stem, width)
    for g, (conv_type, depth) in enumerate(zip(conv_types, depths, strict=True)):
        planes = width * 2**g
        for b in range(depth):
            stride = 2 if (g > 0 and b == 0) else 1
            x = basic_block(x, planes, conv_type, stride, name=f"layer{g + 1}_{b}")
    return common.finish(x, inputs, name, embedding_dim, num_classes)


def _build(
    name: str,
    input_shape: Sequence[int | None],
    width: int,
    depths: Sequence[int],
    embedding_dim: int | None,
    num_classes: int | None,
) -> keras.Model:
    conv_types, stem = LAYOUTS[name]
    return video_resnet(
        name, conv_types, stem, input_shape, width, depths, embedding_dim, num_classes
    )


@BACKBONES.register("r3d_18")
def r3d_18(
    input_shape: Sequence[int | None] = DEFAULT_VIDEO_SHAPE,
    width: int = 64,
    depths: Sequence[int] = (2, 2, 2, 2),
    embedding_dim: int | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """R3D-18: 3D stem, 3x3x3 convs in all groups; 33,371,472 params with a 400-way head.

    Args are those of :func:`video_resnet`.
    """
    return _build("r3d_18", input_shape, width, depths, embedding_dim, num_classes)


@BACKBONES.register("mc2_18")
def mc2_18(
    input_shape: Sequence[int | None] = DEFAULT_VIDEO_SHAPE,
    width: int = 64,
    depths: Sequence[int] = (2, 2, 2, 2),
    embedding_dim: int | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """MC2-18 (Tran et al. 2018): 3D stem (conv1) only, all four residual groups 1x3x3.

    torchvision has no ``mc2_18``; this is its ``mc3_18`` with layer1 also
    ``Conv3DNoTemporal``: 11,400,528 params with a 400-way head (mc3_18 minus
    4 * 64 * 64 * 18 in layer1). Args are those of :func:`video_resnet`.
    """
    return _build("mc2_18", input_shape, width, depths, embedding_dim, num_classes)


@BACKBONES.register("mc3_18")
def mc3_18(
    input_shape: Sequence[int | None] = DEFAULT_VIDEO_SHAPE,
    width: int = 64,
    depths: Sequence[int] = (2, 2, 2, 2),
    embedding_dim: int | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """MC3-18 as torchvision's ``mc3_18``: 3D stem and layer1, layers 2-4 1x3x3.

    11,695,440 params with a 400-way head, 11,490,240 without. Args are those of
    :func:`video_resnet`.
    """
    return _build("mc3_18", input_shape, width, depths, embedding_dim, num_classes)


@BACKBONES.register("r2plus1d_18")
def r2plus1d_18(
    input_shape: Sequence[int | None] = DEFAULT_VIDEO_SHAPE,
    width: int = 64,
    depths: Sequence[int] = (2, 2, 2, 2),
    embedding_dim: int | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """R(2+1)D-18: (2+1)D stem and blocks; 31,505,325 params with a 400-way head.

    Args are those of :func:`video_resnet`.
    """
    return _build("r2plus1d_18", input_shape, width, depths, embedding_dim, num_classes)
