"""Register your own video tower and train with it from a gin file.

A backbone is any factory that returns a functional ``keras.Model`` with one input
named ``"video"`` of shape ``(T, H, W, 3)`` (or ``"audio"``, ``(frames, mels, 1)``) and a
``(B, D)`` float32 output. Registering it under a name makes it buildable with
``BACKBONES.build("my_tiny_video")`` and referable from gin as ``@backbones.my_tiny_video``:

    # my_experiment.gin
    import examples.custom_backbone        # runs the @BACKBONES.register below
    include 'gin/quickstart.gin'
    train.Model.video_tower = @backbones.my_tiny_video
    backbones.my_tiny_video.width = 8
    backbones.my_tiny_video.embedding_dim = 64

    python tools/train.py --gin_file=my_experiment.gin

(``tools/train.py`` puts the repository root on ``sys.path``, so gin can import
``examples``.) ``python -m examples.custom_backbone`` from the repository root builds
the tower and prints its summary.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from avts_tf.registry import BACKBONES


@BACKBONES.register("my_tiny_video")
def my_tiny_video(
    input_shape: Sequence[int | None] = (8, 32, 32, 3),
    width: int = 8,
    depths: Sequence[int] = (1, 1),
    embedding_dim: int | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """A two-stage 3D conv net: [Conv3D-BN-ReLU] x depth per stage, stride 2 between.

    Args:
        input_shape: ``(T, H, W, 3)``; ``None`` entries allowed.
        width: Channels of the first stage; the next stage doubles them.
        depths: Conv units per stage.
        embedding_dim: Optional Dense projection after global average pooling.
        num_classes: Optional linear head on top.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="video")
    x = inputs
    for stage, depth in enumerate(depths):
        for i in range(depth):
            stride = 2 if i == 0 else 1  # every stage starts by halving T, H and W
            x = keras.layers.Conv3D(
                width * 2**stage, 3, strides=stride, padding="same", use_bias=False
            )(x)
            x = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9)(x)
            x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    if embedding_dim is not None:
        x = keras.layers.Dense(embedding_dim, name="embedding")(x)
    if num_classes is not None:
        x = keras.layers.Dense(num_classes, name="fc")(x)
    # A float32 output keeps losses stable under mixed_bfloat16 / mixed_float16 policies.
    outputs = keras.layers.Activation("linear", dtype="float32", name="output")(x)
    return keras.Model(inputs, outputs, name="my_tiny_video")


if __name__ == "__main__":
    model = BACKBONES.build("my_tiny_video", embedding_dim=16)
    model.summary()
    print("output shape:", model(keras.ops.zeros((2, 8, 32, 32, 3))).shape)
