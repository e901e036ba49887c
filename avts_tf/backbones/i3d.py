"""Inflated Inception-V1 (I3D, Carreira & Zisserman 2017), channels last.

Layout as DeepMind's ``kinetics-i3d`` RGB network: Conv 7x7x7/2, MaxPool 1x3x3/(1,2,2),
Conv 1x1x1, Conv 3x3x3, MaxPool 1x3x3/(1,2,2), Mixed_3b-3c, MaxPool 3x3x3/2,
Mixed_4b-4f, MaxPool 2x2x2/2, Mixed_5b-5c, then global average pooling (1024 channels).
Every unit is Conv (no bias) + BN + ReLU with torchvision's BN defaults (the original
used eps 1e-3 and no BN scale). ``width`` scales every channel count by ``width / 64``.
With ``num_classes=400``: 12,697,264 parameters (PyTorch convention).

Convolutions and pools use TensorFlow's ``same`` padding, as the reference (DeepMind's
Sonnet I3D, ``snt.Conv3D(padding=SAME)``) does; unlike the ResNet towers it is not
padded as PyTorch would (on even sizes a strided ``same`` conv pads 0 before, 1 after).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from avts_tf.backbones import common
from avts_tf.registry import BACKBONES

# (branch0 1x1, branch1 1x1, branch1 3x3, branch2 1x1, branch2 3x3, branch3 pool-proj)
MIXED_3 = ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64))
MIXED_4 = (
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
)
MIXED_5 = ((256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128))


def inception_module(x: keras.KerasTensor, channels: Sequence[int], name: str) -> keras.KerasTensor:
    """An inflated Inception module: four branches concatenated on channels."""
    c0, c1a, c1b, c2a, c2b, c3 = channels
    b0 = common.conv_bn(x, c0, 1, name=f"{name}_b0")
    b1 = common.conv_bn(x, c1a, 1, name=f"{name}_b1a")
    b1 = common.conv_bn(b1, c1b, 3, name=f"{name}_b1b")
    b2 = common.conv_bn(x, c2a, 1, name=f"{name}_b2a")
    b2 = common.conv_bn(b2, c2b, 3, name=f"{name}_b2b")
    b3 = keras.layers.MaxPooling3D(3, 1, padding="same", name=f"{name}_b3_pool")(x)
    b3 = common.conv_bn(b3, c3, 1, name=f"{name}_b3b")
    return keras.layers.Concatenate(name=f"{name}_concat")([b0, b1, b2, b3])


def _stage_specs(table: Sequence[Sequence[int]], depth: int) -> list[Sequence[int]]:
    """The first ``depth`` module specs of a stage, repeating the last if deeper."""
    return [table[min(i, len(table) - 1)] for i in range(depth)]


@BACKBONES.register("i3d")
def i3d(
    input_shape: Sequence[int | None] = (16, 112, 112, 3),
    width: int = 64,
    depths: Sequence[int] = (2, 5, 2),
    embedding_dim: int | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """Builds I3D (Inception-V1 inflated to 3D).

    Args:
        input_shape: ``(T, H, W, 3)``; entries may be ``None``.
        width: Channels of the first conv (64 in the paper); all widths scale with it.
        depths: Inception modules in stages 3, 4 and 5 (paper: (2, 5, 2)).
        embedding_dim: Optional projection size after global pooling.
        num_classes: Optional linear head size.

    Returns:
        A functional ``keras.Model`` named ``"i3d"`` with input ``"video"``.
    """
    if len(depths) != 3:
        raise ValueError(f"i3d depths has 3 stages, got {tuple(depths)}")

    def ch(c: int) -> int:
        return max(1, c * width // 64)

    inputs = common.video_input(input_shape)
    x = common.conv_bn(inputs, ch(64), 7, 2, name="conv3d_1a")
    x = keras.layers.MaxPooling3D((1, 3, 3), (1, 2, 2), padding="same", name="pool_2a")(x)
    x = common.conv_bn(x, ch(64), 1, name="conv3d_2b")
    x = common.conv_bn(x, ch(192), 3, name="conv3d_2c")
    x = keras.layers.MaxPooling3D((1, 3, 3), (1, 2, 2), padding="same", name="pool_3a")(x)
    stages = (("3", MIXED_3, None), ("4", MIXED_4, (3, 2)), ("5", MIXED_5, (2, 2)))
    for (stage, table, pool), depth in zip(stages, depths, strict=True):
        if pool is not None:
            size, stride = pool
            x = keras.layers.MaxPooling3D(size, stride, padding="same", name=f"pool_{stage}a")(x)
        for i, spec in enumerate(_stage_specs(table, depth)):
            x = inception_module(x, [ch(c) for c in spec], name=f"mixed_{stage}{chr(98 + i)}")
    return common.finish(x, inputs, "i3d", embedding_dim, num_classes)
