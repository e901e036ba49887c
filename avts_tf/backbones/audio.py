"""Audio towers on log-mel spectrograms ``(frames, mel_bins, 1)``.

* ``avts_audio_vgg``: the AVTS audio subnetwork (Korbar et al. 2018), VGG-style:
  groups of [Conv 3x3 - BN - ReLU] x depth + MaxPool 2x2 with widths ``width * (1, 2, 4, 8)``,
  then global average pooling to ``8 * width`` features.
* ``audio_resnet18``: torchvision's 2D ResNet-18 layout (Conv 7x7/2, MaxPool 3x3/2,
  four groups of BasicBlocks) on the spectrogram, ``8 * width`` features. It pads as
  torchvision does (``kernel_size // 2`` on both sides; see
  :func:`avts_tf.backbones.common.torch_conv`), including the max pool's 1-pixel border:
  PyTorch pads that with -inf, here with zeros, which is the same after the ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from avts_tf.backbones import common
from avts_tf.registry import BACKBONES

DEFAULT_AUDIO_SHAPE = (200, 64, 1)


@BACKBONES.register("avts_audio_vgg")
def avts_audio_vgg(
    input_shape: Sequence[int | None] = DEFAULT_AUDIO_SHAPE,
    width: int = 64,
    depths: Sequence[int] = (2, 2, 2, 2),
    embedding_dim: int | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """Builds the AVTS VGG-style audio tower.

    Args:
        input_shape: ``(frames, mel_bins, 1)``; entries may be ``None``.
        width: Channels of the first group; later groups double.
        depths: Conv-BN-ReLU units per group, each group followed by a 2x2 max pool.
        embedding_dim: Optional projection size after global pooling.
        num_classes: Optional linear head size.

    Returns:
        A functional ``keras.Model`` named ``"avts_audio_vgg"`` with input ``"audio"``.
    """
    inputs = common.audio_input(input_shape)
    x = inputs
    for g, depth in enumerate(depths):
        for i in range(depth):
            x = common.conv_bn(x, width * 2**g, 3, name=f"block{g + 1}_{i}")
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"block{g + 1}_pool")(x)
    return common.finish(x, inputs, "avts_audio_vgg", embedding_dim, num_classes)


def basic_block_2d(x: keras.KerasTensor, planes: int, stride: int, name: str) -> keras.KerasTensor:
    """Torchvision's 2D ``BasicBlock`` with a 1x1 conv + BN projection on a shape change."""
    shortcut = x
    if stride != 1 or int(x.shape[-1]) != planes:
        shortcut = common.conv_bn(
            x, planes, 1, stride, relu=False, name=f"{name}_downsample", padding="torch"
        )
    y = common.conv_bn(x, planes, 3, stride, name=f"{name}_1", padding="torch")
    y = common.conv_bn(y, planes, 3, relu=False, name=f"{name}_2", padding="torch")
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


@BACKBONES.register("audio_resnet18")
def audio_resnet18(
    input_shape: Sequence[int | None] = DEFAULT_AUDIO_SHAPE,
    width: int = 64,
    depths: Sequence[int] = (2, 2, 2, 2),
    embedding_dim: int | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """Builds a 2D ResNet-18 over the log-mel spectrogram.

    Args:
        input_shape: ``(frames, mel_bins, 1)``; entries may be ``None``.
        width: Channels of the stem and first group; later groups double.
        depths: BasicBlocks per group.
        embedding_dim: Optional projection size after global pooling.
        num_classes: Optional linear head size.

    Returns:
        A functional ``keras.Model`` named ``"audio_resnet18"`` with input ``"audio"``.
    """
    inputs = common.audio_input(input_shape)
    x = common.conv_bn(inputs, width, 7, 2, name="stem", padding="torch")
    # torchvision's MaxPool2d(3, 2, padding=1); zeros pad like -inf after the ReLU (x >= 0).
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, 2, padding="valid", name="stem_pool")(x)
    for g, depth in enumerate(depths):
        for b in range(depth):
            stride = 2 if (g > 0 and b == 0) else 1
            x = basic_block_2d(x, width * 2**g, stride, name=f"layer{g + 1}_{b}")
    return common.finish(x, inputs, "audio_resnet18", embedding_dim, num_classes)
