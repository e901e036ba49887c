"""Fault tolerance: ``kill -9`` and re-run resumes exactly; a NaN loss keeps the last good state.

Run as a script, this file is the training command the tests kill and re-run:
``python tests/test_fault_tolerance.py MODEL_DIR DATA_DIR [GIN_BINDING ...]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kill9
import numpy as np
import pytest
from checks import subprocess_env
from tiny import REPO_ROOT, SPEC_GIN, tiny_audio_tower, tiny_video_tower

# Tiny towers with BatchNorm, SGD with momentum, a curriculum that switches to hard
# negatives mid-run, checkpoints every 4 batches on 10-batch epochs (so most of them
# fall mid-epoch), and deterministic ops so "equal" means bit-equal.
RECIPE = (
    """
train.Model.video_tower = @tests.tiny_video_tower
tests.tiny_video_tower.batch_norm = True
train.Model.audio_tower = @tests.tiny_audio_tower
tests.tiny_audio_tower.batch_norm = True
"""
    + SPEC_GIN
    + """
objectives.contrastive.negatives = @samplers.negative_samplers()
samplers.negative_samplers.hard_min_gap_s = 0.0
train.Model.objective = @objectives.contrastive
objectives.contrastive.curriculum = @curricula.step_switch()
curricula.step_switch.boundaries = [14]
curricula.step_switch.mixtures = [{"easy": 1.0}, {"easy": 0.5, "hard": 0.5}]
train.Runtime.deterministic = True
"""
    + kill9.SCHEDULE_GIN
)


def main(argv: list[str]) -> None:
    """The training command: tiny recipe, ``train.run`` on ``argv[1]`` with data ``argv[2]``."""
    import gin
    from absl import logging

    from avts_tf import distribute, train

    logging.set_verbosity(logging.INFO)
    gin.external_configurable(tiny_video_tower, module="tests")
    gin.external_configurable(tiny_audio_tower, module="tests")
    model_dir, data_dir, *bindings = argv[1:]
    gin.parse_config([RECIPE, f'train.run.dataset = "{data_dir}"', *bindings])
    distribute.make_strategy()
    results = train.run(model_dir=model_dir)
    print(json.dumps(results))


def _command(model_dir: Path, data_dir: Path, *bindings: str) -> list[str]:
    return [sys.executable, __file__, str(model_dir), str(data_dir), *bindings]


def _run(command: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _tower_weights(model_dir: Path) -> list[np.ndarray]:
    import keras

    weights = []
    for name in ("video_tower.keras", "audio_tower.keras"):
        weights += [np.asarray(w) for w in keras.saving.load_model(model_dir / name).weights]
    return weights


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory, tiny_prepared) -> Path:
    """The uninterrupted run both resume tests end equal to."""
    run = tmp_path_factory.mktemp("reference") / "run"
    _run(_command(run, tiny_prepared))
    return run


@pytest.mark.slow
def test_kill_9_then_rerun_equals_uninterrupted_run(tmp_path, tiny_prepared, reference_dir):
    killed_dir = tmp_path / "killed"
    # Kill -9 once a mid-epoch checkpoint (batch 12 or later) exists, while training.
    killed_at = kill9.kill_when_checkpointed(
        _command(killed_dir, tiny_prepared), killed_dir, 12, subprocess_env(), timeout=240
    )
    assert killed_at < 40 and not (killed_dir / "eval.json").exists()

    resumed = _run(_command(killed_dir, tiny_prepared))
    assert f"batch {killed_at}, step {killed_at}" in resumed.stderr
    assert f"curriculum stage {int(killed_at >= 14)}" in resumed.stderr
    index = json.loads((killed_dir / "checkpoints" / "checkpoint.json").read_text())
    assert index["checkpoints"][-1] == {
        "batches": 40,
        "step": 40,
        "curriculum_stage": 1,
        "file": "ckpt-000000040.weights.h5",
    }
    assert json.loads((killed_dir / "eval.json").read_text()) == json.loads(
        (reference_dir / "eval.json").read_text()
    )
    for resumed_w, reference_w in zip(
        _tower_weights(killed_dir), _tower_weights(reference_dir), strict=True
    ):
        np.testing.assert_array_equal(resumed_w, reference_w)


@pytest.mark.slow
def test_chaos_five_kills_at_random_batches_end_equal_to_an_uninterrupted_run(
    tmp_path, tiny_prepared, reference_dir
):
    import random
    import signal
    import time

    chaos_dir = tmp_path / "chaos"
    rng = random.Random(20261204)
    # Five kill points among the 40 batches; a random delay after the checkpoint that
    # reaches each one lands some kills mid-batch, some mid-write.
    points = sorted(rng.sample(range(2, 31, 2), 5))
    every_2 = "train.Trainer.checkpoint_every_steps = 2"
    killed_at = []
    for point in points:
        victim = subprocess.Popen(
            _command(chaos_dir, tiny_prepared, every_2),
            cwd=REPO_ROOT,
            env=subprocess_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 240
            while kill9.checkpointed_batches(chaos_dir) < point and victim.poll() is None:
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.05))
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait()
        killed_at.append(kill9.checkpointed_batches(chaos_dir))
    assert len(killed_at) == 5 and killed_at[-1] < 40, killed_at
    assert not (chaos_dir / "eval.json").exists()
    _run(_command(chaos_dir, tiny_prepared, every_2))
    assert json.loads((chaos_dir / "eval.json").read_text()) == json.loads(
        (reference_dir / "eval.json").read_text()
    )
    for chaos_w, reference_w in zip(
        _tower_weights(chaos_dir), _tower_weights(reference_dir), strict=True
    ):
        np.testing.assert_array_equal(chaos_w, reference_w)


if __name__ == "__main__":
    main(sys.argv)
