"""tools/import_torchvision.py end to end: .pth in, .keras out with torchvision's logits."""

import os
import subprocess
import sys

import keras
import pytest
from checks import error_line_of
from tiny import REPO_ROOT

sys.modules.setdefault("triton", None)  # see test_torchvision_equality.py
torch = pytest.importorskip("torch")
resnet = pytest.importorskip("torchvision.models.video.resnet")

from test_torchvision_equality import TOLERANCE, compare, torchvision_model  # noqa: E402


def run_tool(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "import_torchvision.py"), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_tool_writes_a_keras_model_with_torchvision_logits(tmp_path):
    import avts_tf.backbones  # noqa: F401  (custom layers for load_model)

    reference = torchvision_model("r2plus1d_18")
    checkpoint = tmp_path / "r2plus1d.pth"
    torch.save({"state_dict": reference.state_dict()}, checkpoint)
    output = tmp_path / "r2plus1d.keras"
    result = run_tool(
        "--arch",
        "r2plus1d_18",
        "--checkpoint",
        str(checkpoint),
        "--output",
        str(output),
        "--input_shape",
        "7,33,35",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "(logits)" in result.stdout
    model = keras.models.load_model(output)
    assert tuple(model.inputs[0].shape[1:]) == (7, 33, 35, 3)
    assert compare(model, reference, (7, 33, 35)) <= TOLERANCE


def test_tool_bad_input_exits_2_with_one_error_line(tmp_path):
    state = torchvision_model("mc3_18").state_dict()
    state["layer4.0.extra.weight"] = torch.zeros(3)
    checkpoint = tmp_path / "extra.pth"
    torch.save(state, checkpoint)
    common = ["--checkpoint", str(checkpoint), "--output", str(tmp_path / "out.keras")]
    line = error_line_of(run_tool("--arch", "mc3_18", *common))
    assert "unexpected keys" in line and "layer4.0.extra.weight" in line
    line = error_line_of(run_tool("--arch", "mc3_18", *common, "--input_shape", "8,32"))
    assert "--input_shape must be T,H,W" in line
    assert not (tmp_path / "out.keras").exists()


def test_a_file_that_is_no_state_dict_says_what_it_is(tmp_path):
    from avts_tf.backbones.torchvision_import import TorchvisionImportError, load_state_dict

    text = tmp_path / "notes.pth"
    text.write_text("garbage")
    with pytest.raises(
        TorchvisionImportError,
        match=r"\(not a file torch.save writes: it "
        r"starts with b'ga'\); pass a file",
    ):
        load_state_dict(text)
    whole = tmp_path / "whole.pth"  # torch.save(model): a pickled module, not tensors
    torch.save(torchvision_model("mc3_18"), whole)
    with pytest.raises(
        TorchvisionImportError,
        match=r"\(it holds a pickled torchvision.models."
        r"video.resnet.VideoResNet object, not "
        r"only tensors; we load tensors only\)",
    ):
        load_state_dict(whole)


def run_finetune(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "finetune.py"), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_finetune_from_torchvision_checkpoint(tiny_prepared, tmp_path):
    checkpoint = tmp_path / "mc3.pth"
    torch.save(torchvision_model("mc3_18").state_dict(), checkpoint)
    common = [
        "--data",
        str(tiny_prepared),
        "--steps",
        "1",
        "--batch_size",
        "2",
        "--clips_per_video",
        "1",
        "--verbose",
        "0",
    ]
    result = run_finetune(
        "--init",
        f"torchvision:mc3_18:{checkpoint}",
        *common,
        "--gin_param",
        "data.ClipSpec.num_frames = 4",
        "--save",
        str(tmp_path / "ft.keras"),
    )
    assert result.returncode == 0, result.stderr
    assert "video accuracy" in result.stdout
    import avts_tf.backbones  # noqa: F401

    model = keras.models.load_model(tmp_path / "ft.keras")
    names = [layer.name for layer in model.get_layer("video_trunk").layers]
    assert "kinetics_normalization" in names and "fc" not in names
    assert tuple(model.inputs[0].shape[1:]) == (4, 32, 32, 3)
    line = error_line_of(run_finetune("--init", f"torchvision:r3d_18:{checkpoint}", *common))
    assert "looks like a mc3_18 checkpoint" in line
