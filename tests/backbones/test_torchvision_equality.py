"""Converted torchvision video ResNets compute torchvision's logits (even and odd sizes).

Even sizes pin the padding of strided convs: PyTorch pads 1/1 where TensorFlow's ``same``
would pad 0/1.
"""

import sys

import keras
import numpy as np
import pytest

from avts_tf.backbones import torchvision_import
from avts_tf.backbones.torchvision_import import TorchvisionImportError, convert_state_dict

# torchvision imports triton (via torch._dynamo), whose LLVM clashes with the TensorFlow the
# conftest already loaded (segfault); these CPU tests do not need it.
sys.modules.setdefault("triton", None)
torch = pytest.importorskip("torch")
resnet = pytest.importorskip("torchvision.models.video.resnet")

NUM_CLASSES = 5
SIZES = [(8, 32, 32), (7, 33, 35)]  # (T, H, W): even and odd
TOLERANCE = 1e-4  # max |diff| relative to max |torch logits|
BUILDERS = {
    "r3d_18": (resnet.BasicStem, [resnet.Conv3DSimple] * 4),
    "mc3_18": (resnet.BasicStem, [resnet.Conv3DSimple] + [resnet.Conv3DNoTemporal] * 3),
    "r2plus1d_18": (resnet.R2Plus1dStem, [resnet.Conv2Plus1D] * 4),
}


def randomize(model, seed: int = 0):
    """Random conv/fc weights and BN affine parameters and running statistics (2D or 3D)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.Conv3d | torch.nn.Linear):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen))
                module.weight.mul_((2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            elif isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm3d):
                shape = module.weight.shape
                module.weight.copy_(torch.rand(shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(shape, generator=gen) * 0.2)
                module.running_mean.copy_(torch.randn(shape, generator=gen) * 0.2)
                module.running_var.copy_(torch.rand(shape, generator=gen) + 0.5)
    return model.eval()


def torchvision_model(arch: str, layers=(1, 1, 1, 1), seed: int = 0):
    """torchvision's own VideoResNet code; one block per group keeps the test fast."""
    stem, conv_makers = BUILDERS[arch]
    model = resnet.VideoResNet(resnet.BasicBlock, conv_makers, list(layers), stem, NUM_CLASSES)
    return randomize(model, seed)


def compare(keras_model, torch_model, size, seed: int = 1, normalize: bool = False):
    """``max |keras - torch| / max |torch|`` on one random clip of ``size`` (T, H, W)."""
    rng = np.random.default_rng(seed)
    clip = rng.random((2,) + tuple(size) + (3,), dtype=np.float32)  # (B, T, H, W, C)
    torch_in = clip
    if not normalize:
        clip = torch_in = (clip - 0.45) / 0.22
    else:
        mean = np.asarray(torchvision_import.KINETICS_MEAN, np.float32)
        torch_in = (clip - mean) / np.asarray(torchvision_import.KINETICS_STD, np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(torch_in.transpose(0, 4, 1, 2, 3).copy()))
    expected = expected.numpy()
    got = np.asarray(keras_model(clip, training=False))
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_converted_model_matches_torchvision(arch):
    reference = torchvision_model(arch)
    model = convert_state_dict(arch, reference.state_dict(), input_shape=(None, None, None))
    assert model.get_layer("fc").units == NUM_CLASSES
    diffs = {size: compare(model, reference, size) for size in SIZES}
    assert all(d <= TOLERANCE for d in diffs.values()), diffs


def test_full_depth_and_kinetics_normalization():
    # torchvision's r2plus1d_18 builder itself (two blocks per group), on [0, 1] frames.
    reference = randomize(resnet.r2plus1d_18(weights=None, num_classes=NUM_CLASSES), seed=2)
    model = convert_state_dict(
        "r2plus1d_18", reference.state_dict(), input_shape=(8, 32, 32), normalize=True
    )
    assert model.get_layer("layer4_1_conv2_t").filters == 512
    assert compare(model, reference, (8, 32, 32), normalize=True) <= TOLERANCE


def test_without_head_returns_pooled_features():
    state = torchvision_model("mc3_18").state_dict()
    model = convert_state_dict("mc3_18", state, input_shape=(4, 32, 32), include_head=False)
    assert "fc" not in [layer.name for layer in model.layers]
    assert model(np.zeros((1, 4, 32, 32, 3), "float32")).shape == (1, 512)


def _error(arch, state):
    with pytest.raises(TorchvisionImportError) as info:
        convert_state_dict(arch, state, input_shape=(4, 32, 32))
    message = str(info.value)
    assert "\n" not in message and "; " in message
    return message


@pytest.fixture(scope="module")
def mc3_state():
    return {k: v.numpy() for k, v in torchvision_model("mc3_18").state_dict().items()}


def test_refuses_unknown_key(mc3_state):
    state = dict(mc3_state, **{"layer1.0.extra.weight": np.zeros(3, "float32")})
    assert "unexpected keys" in _error("mc3_18", state)
    assert "layer1.0.extra.weight" in _error("mc3_18", state)


def test_refuses_missing_key(mc3_state):
    state = {k: v for k, v in mc3_state.items() if k != "layer3.0.downsample.1.running_var"}
    message = _error("mc3_18", state)
    assert "missing keys" in message and "layer3.0.downsample.1.running_var" in message


def test_refuses_shape_mismatch_and_names_the_architecture(mc3_state):
    message = _error("r3d_18", mc3_state)  # mc3's 1x3x3 kernels in layers 2-4
    assert "layer2.0.conv1.0.weight has shape (128, 64, 1, 3, 3)" in message
    assert "(128, 64, 3, 3, 3)" in message and "looks like a mc3_18" in message
    state = dict(mc3_state, **{"fc.bias": np.zeros(7, "float32")})
    assert "fc.bias has shape (7,)" in _error("mc3_18", state)


def test_refuses_unknown_architecture(mc3_state):
    assert "choose one of r3d_18, mc3_18, r2plus1d_18" in _error("resnet50", mc3_state)


def test_load_torchvision_reads_wrapped_checkpoints(tmp_path):
    reference = torchvision_model("r3d_18")
    path = tmp_path / "wrapped.pth"
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}  # DataParallel
    torch.save({"model": state, "epoch": 3}, path)
    model = torchvision_import.load_torchvision("r3d_18", path, input_shape=(8, 32, 32))
    assert compare(model, reference, (8, 32, 32)) <= TOLERANCE
    assert isinstance(model, keras.Model)
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    for bad, needle in [(tmp_path / "junk.pth", "cannot read"), (tmp_path / "no.pth", "exist")]:
        with pytest.raises(TorchvisionImportError, match=needle):
            torchvision_import.load_torchvision("r3d_18", bad)


def _audio_name(keras_name: str) -> str:
    """audio_resnet18 layer -> torchvision 2D ResNet module (conv1/bn1/layerG.B.*/fc)."""
    if keras_name.startswith("stem_"):
        return {"stem_conv": "conv1", "stem_bn": "bn1"}[keras_name]
    if keras_name == "fc":
        return "fc"
    group, block, rest = keras_name.split("_", 2)
    module = {
        "1_conv": "conv1",
        "1_bn": "bn1",
        "2_conv": "conv2",
        "2_bn": "bn2",
        "downsample_conv": "downsample.0",
        "downsample_bn": "downsample.1",
    }[rest]
    return f"{group}.{block}.{module}"


def test_audio_resnet18_pads_as_torchvision():
    from torchvision.models import resnet as resnet2d

    from avts_tf.registry import BACKBONES

    reference = resnet2d.ResNet(resnet2d.BasicBlock, [1, 1, 1, 1], num_classes=NUM_CLASSES)
    reference.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # one spectrogram channel
    randomize(reference)
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    model = BACKBONES.build(
        "audio_resnet18", input_shape=(None, None, 1), depths=(1, 1, 1, 1), num_classes=NUM_CLASSES
    )
    for layer in model.layers:
        if layer.weights:
            prefix = _audio_name(layer.name) + "."
            params = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            layer.set_weights(torchvision_import.keras_weights(layer, params))
    rng = np.random.default_rng(3)
    for size in [(32, 16), (33, 17), (30, 22)]:
        x = rng.standard_normal((2,) + size + (1,)).astype("float32")
        with torch.no_grad():
            expected = reference(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
        diff = np.abs(np.asarray(model(x, training=False)) - expected).max()
        assert diff <= TOLERANCE * np.abs(expected).max(), (size, diff / np.abs(expected).max())
