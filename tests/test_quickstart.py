"""End to end: the README's quickstart command, and its shuffled-audio control."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("avts_cache")


def train(model_dir: Path, cache_dir: Path, *params: str) -> float:
    env = dict(os.environ, AVTS_CACHE_DIR=str(cache_dir), TF_CPP_MIN_LOG_LEVEL="3")
    command = [
        sys.executable, "tools/train.py", "--gin_file=gin/quickstart.gin",
        f"--model_dir={model_dir}", "--gin_param=train.Runtime.verbose=2",
        *[f"--gin_param={p}" for p in params],
    ]
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stderr[-4000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("sync_accuracy: "), result.stdout[-2000:]
    accuracy = float(last.split(": ")[1])
    saved = json.loads((model_dir / "eval.json").read_text())
    assert saved["sync_accuracy"] == pytest.approx(accuracy, abs=5e-4)
    return accuracy


@pytest.mark.slow
def test_quickstart_learns_synchronization(tmp_path, cache_dir):
    accuracy = train(tmp_path / "run", cache_dir)
    assert accuracy >= 0.90
    for name in ("video_tower.keras", "audio_tower.keras", "operative_config.gin"):
        assert (tmp_path / "run" / name).is_file()
    assert any((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_shuffled_audio_control_stays_at_chance(tmp_path, cache_dir):
    # Same recipe, but every training clip is paired with unrelated audio: nothing to learn.
    accuracy = train(tmp_path / "control", cache_dir, "objectives.contrastive.shuffle_audio=True")
    assert 0.40 <= accuracy <= 0.60
