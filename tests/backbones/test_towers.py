"""The tower contract, checked for every registered backbone at tiny shapes."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from avts_tf.backbones import torch_param_count
from avts_tf.registry import BACKBONES

NAMES = BACKBONES.list()
TINY_VIDEO = (4, 32, 32, 3)
TINY_AUDIO = (32, 16, 1)


def tiny_kwargs(name: str) -> dict:
    """Tiny input, width 8 and one block per stage where the factory takes them."""
    params = inspect.signature(BACKBONES.get(name)).parameters
    video = len(params["input_shape"].default) == 4
    kwargs = {"input_shape": TINY_VIDEO if video else TINY_AUDIO}
    if "width" in params:
        kwargs["width"] = 8
    if "depths" in params:
        kwargs["depths"] = (1,) * len(params["depths"].default)
    return kwargs


def sample(model: keras.Model, batch: int = 2, seed: int = 0) -> np.ndarray:
    shape = (batch,) + tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


@pytest.mark.parametrize("name", NAMES)
def test_named_input_and_pooled_output(name):
    model = BACKBONES.build(name, **tiny_kwargs(name))
    assert model.name == name
    assert len(model.inputs) == 1
    input_name = model.inputs[0].name
    assert input_name in ("video", "audio")
    assert model.inputs[0].shape[1:] == (TINY_VIDEO if input_name == "video" else TINY_AUDIO)
    out = model(sample(model))
    assert out.shape[0] == 2 and len(out.shape) == 2
    assert out.dtype == "float32"


@pytest.mark.parametrize("name", NAMES)
def test_embedding_and_head(name):
    model = BACKBONES.build(name, embedding_dim=6, num_classes=5, **tiny_kwargs(name))
    assert model.get_layer("embedding").units == 6
    assert model(sample(model)).shape == (2, 5)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    model = BACKBONES.build(name, embedding_dim=4, **tiny_kwargs(name))
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = sample(model)
    np.testing.assert_allclose(clone(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_keras_save_reload_identical(name, tmp_path):
    model = BACKBONES.build(name, num_classes=3, **tiny_kwargs(name))
    x = sample(model)
    model(x, training=True)  # move BN statistics away from their initial values
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_predict_over_dataset(name):
    model = BACKBONES.build(name, embedding_dim=4, **tiny_kwargs(name))
    x = sample(model, batch=3)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(2)
    out = model.predict(ds, verbose=0)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out, model(x), rtol=1e-4, atol=1e-4)


def bfloat16_gradients_main() -> None:
    """Prints, as JSON, each tower's output dtype and whether its gradients are finite
    after one training-mode step under ``mixed_bfloat16`` (run in a subprocess)."""
    import json

    import avts_tf.backbones  # noqa: F401  (registers the towers)

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    results = {}
    for name in NAMES:
        keras.utils.set_random_seed(0)
        model = BACKBONES.build(name, num_classes=3, **tiny_kwargs(name))
        x = tf.constant(sample(model))
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = tf.reduce_mean(tf.square(out))
        grads = tape.gradient(loss, model.trainable_weights)
        results[name] = {
            "dtype": out.dtype.name,
            "finite": all(
                g is not None and bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads
            ),
        }
    print(json.dumps(results))


@pytest.fixture(scope="module")
def bfloat16_gradients():
    """Towers in mixed bfloat16, in a process with oneDNN's kernels off.

    TF 2.21's oneDNN bfloat16 convolution (this CPU: AVX-512 BF16) intermittently returns
    non-finite kernel gradients: r2plus1d_18's ``layer2_0_conv2_t`` in 3 to 7 of 12 seeds,
    varying from run to run; none in 12 seeds with ``TF_ENABLE_ONEDNN_OPTS=0``.
    """
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; sys.path[:0] = ['tests/backbones', 'tests', '.']; "
        "import test_towers; test_towers.bfloat16_gradients_main()"
    )
    root = Path(__file__).resolve().parents[2]
    env = dict(
        os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", NAMES)
def test_mixed_bfloat16_builds_and_trains(name, bfloat16_gradients):
    assert bfloat16_gradients[name] == {"dtype": "float32", "finite": True}


@pytest.mark.parametrize("name", NAMES)
def test_dynamic_input_shape(name):
    kwargs = tiny_kwargs(name)
    kwargs["input_shape"] = (None,) * (len(kwargs["input_shape"]) - 1) + (
        kwargs["input_shape"][-1],
    )
    model = BACKBONES.build(name, embedding_dim=4, **kwargs)
    tiny = TINY_VIDEO if len(kwargs["input_shape"]) == 4 else TINY_AUDIO
    for scale in (1, 2):
        shape = (1,) + tuple(d * scale for d in tiny[:-1]) + (tiny[-1],)
        assert model(np.zeros(shape, "float32")).shape == (1, 4)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("r3d_18", 33_371_472),
        ("mc3_18", 11_695_440),
        ("r2plus1d_18", 31_505_325),
        ("mc2_18", 11_400_528),
    ],
)
def test_torchvision_parameter_counts(name, expected):
    # torchvision counts parameters() only: BN gamma/beta but not running mean/var.
    assert torch_param_count(BACKBONES.build(name, num_classes=400)) == expected


def test_mc3_18_backbone_without_head():
    assert torch_param_count(BACKBONES.build("mc3_18")) == 11_490_240


def test_torch_param_count_equals_trainable_count():
    model = BACKBONES.build("mc3_18", **tiny_kwargs("mc3_18"))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert torch_param_count(model) == trainable


def test_video_resnet_strides_follow_torchvision():
    # R3D halves time in layers 2-4; MC3's 1x3x3 layers never stride in time.
    r3d = BACKBONES.build("r3d_18", input_shape=(16, 112, 112, 3), width=8)
    mc3 = BACKBONES.build("mc3_18", input_shape=(16, 112, 112, 3), width=8)
    assert r3d.get_layer("layer4_1_out").output.shape[1:4] == (2, 7, 7)
    assert mc3.get_layer("layer4_1_out").output.shape[1:4] == (16, 7, 7)


@pytest.mark.parametrize("name", ["r3d_18", "mc2_18", "mc3_18", "r2plus1d_18", "audio_resnet18"])
def test_strided_convs_pad_symmetrically_as_pytorch(name):
    # TF's "same" pads 0/1 at stride 2 on even sizes; PyTorch pads kernel // 2 both sides.
    model = BACKBONES.build(name, **tiny_kwargs(name))
    convs = [la for la in model.layers if isinstance(la, keras.layers.Conv2D | keras.layers.Conv3D)]
    strided = [la for la in convs if max(la.strides) > 1 and max(la.kernel_size) > 1]
    assert strided
    for conv in strided:
        pad = model.get_layer(f"{conv.name}_pad")
        assert conv.padding == "valid"
        assert pad.padding == tuple((k // 2, k // 2) for k in conv.kernel_size)
        assert conv.input is pad.output


def test_audio_resnet18_max_pool_pads_one_pixel():
    model = BACKBONES.build("audio_resnet18", **tiny_kwargs("audio_resnet18"))
    assert model.get_layer("stem_pool_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("stem_pool").padding == "valid"


def test_r2plus1d_midplanes_computed_once_per_block():
    model = BACKBONES.build("r2plus1d_18", width=64)
    # layer2_0: inplanes 64, planes 128 -> mid 230 for both convs of the block.
    assert model.get_layer("layer2_0_conv1_s").filters == 230
    assert model.get_layer("layer2_0_conv2_s").filters == 230
    assert model.get_layer("layer2_1_conv1_s").filters == 288


def test_bn_uses_torchvision_defaults():
    model = BACKBONES.build("mc3_18", **tiny_kwargs("mc3_18"))
    bns = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert bns and all(b.epsilon == 1e-5 and b.momentum == 0.9 for b in bns)
    convs = [la for la in model.layers if isinstance(la, keras.layers.Conv3D)]
    assert convs and not any(c.use_bias for c in convs)
