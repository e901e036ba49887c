"""The temporal task resumes exactly after ``kill -9``: weights and feature queues bit-equal.

Run as a script, this file is the training command the test kills and re-runs:
``python tests/tasks/temporal/test_temporal_resume.py MODEL_DIR DATA_DIR``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, as a script too

import kill9  # noqa: E402
from checks import subprocess_env  # noqa: E402
from tiny import REPO_ROOT, SPEC_GIN, tiny_audio_tower, tiny_video_tower  # noqa: E402

QUEUE = 12  # Fills in 3 of the 40 steps of 4 examples, then turns over every 3.

# Tiny towers with BatchNorm, two views at speeds 1, 2 and 4 (the tiny records hold 24
# frames, a 4x view 16), deterministic ops so that "equal" means bit-equal.
RECIPE = (
    f"""
train.Model.video_tower = @tests.tiny_video_tower
tests.tiny_video_tower.batch_norm = True
train.Model.audio_tower = @tests.tiny_audio_tower
tests.tiny_audio_tower.batch_norm = True
train.Model.objective = @objectives.temporal
objectives.temporal.view_spec = @temporal.ViewSpec()
temporal.ViewSpec.speeds = (1, 2, 4)
objectives.temporal.projection_dim = 8
objectives.temporal.hidden_units = 8
objectives.temporal.queue_size = {QUEUE}
train.run.callbacks = [@tests.DumpQueues()]
train.Runtime.deterministic = True
"""
    + SPEC_GIN
    + kill9.SCHEDULE_GIN
    + """
# The shared schedule's rate (0.05, momentum 0.9) takes these towers' temporal losses to
# NaN within 40 steps on some draws; resuming exactly is what this test is about.
keras.optimizers.SGD.learning_rate = 0.01
"""
)


def main(argv: list[str]) -> None:
    """The training command: the recipe above, ``train.run`` on ``argv[1]`` with ``argv[2]``."""
    import gin
    import keras
    from absl import logging

    from avts_tf import distribute, train

    class DumpQueues(keras.callbacks.Callback):
        """Writes the task's queues to ``queues.npz`` in the model_dir when training ends."""

        def on_train_end(self, logs=None):
            queues = self.model.objective.queues
            np.savez(
                Path(argv[1]) / "queues.npz",
                **{
                    f"{modality}_{part}": np.asarray(variable)
                    for modality, variables in queues.items()
                    for part, variable in zip(("keys", "ids", "filled"), variables, strict=True)
                },
            )

    logging.set_verbosity(logging.INFO)
    gin.external_configurable(tiny_video_tower, module="tests")
    gin.external_configurable(tiny_audio_tower, module="tests")
    gin.external_configurable(DumpQueues, module="tests")
    model_dir, data_dir = argv[1:3]
    gin.parse_config([RECIPE, f'train.run.dataset = "{data_dir}"'])
    distribute.make_strategy()
    print(json.dumps(train.run(model_dir=model_dir)))


def _command(model_dir: Path, data_dir: Path) -> list[str]:
    return [sys.executable, __file__, str(model_dir), str(data_dir)]


def _queues(model_dir: Path) -> dict[str, np.ndarray]:
    with np.load(model_dir / "queues.npz") as queues:
        return dict(queues)


@pytest.mark.slow
def test_kill_9_then_rerun_equals_uninterrupted_run_queue_included(tmp_path, tiny_prepared):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    _, reference_log, killed_at = kill9.reference_and_killed(
        _command(reference_dir, tiny_prepared),
        _command(killed_dir, tiny_prepared),
        killed_dir,
        12,
        subprocess_env(),
        timeout=300,
    )
    assert killed_at < 40 and not (killed_dir / "eval.json").exists()
    resumed = subprocess.run(
        _command(killed_dir, tiny_prepared),
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"batch {killed_at}, step {killed_at}" in resumed.stderr

    reference, restored = _queues(reference_dir), _queues(killed_dir)
    assert int(reference["video_filled"]) == QUEUE
    assert len(set(reference["video_ids"].tolist())) >= 2  # keys of several videos
    for name, values in reference.items():
        np.testing.assert_array_equal(restored[name], values, err_msg=name)
    # Every weight of the model (towers, heads, queues) is bit-equal.
    digest = "Weights digest: "
    assert [line for line in resumed.stderr.splitlines() if digest in line][-1].split(digest)[
        1
    ] == [line for line in reference_log.splitlines() if digest in line][-1].split(digest)[1]
    assert json.loads((killed_dir / "eval.json").read_text()) == json.loads(
        (reference_dir / "eval.json").read_text()
    )


if __name__ == "__main__":
    main(sys.argv)
