"""Run a training command to its end beside a copy of it that is killed with ``kill -9``.

Used by the resume tests (``import kill9``): the victim is killed once its checkpoint
index records at least ``kill_at`` batches, while it is still training.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tiny import REPO_ROOT

# The schedule the resume tests kill: SGD with momentum, 40 batches in 10-batch epochs,
# a checkpoint every 4 (so most fall mid-epoch); kill at 12 or later.
SCHEDULE_GIN = """
train.Trainer.optimizer = @keras.optimizers.SGD
keras.optimizers.SGD.learning_rate = 0.05
keras.optimizers.SGD.momentum = 0.9
train.Trainer.batch_size = 4
train.Trainer.train_steps = 40
train.Trainer.steps_per_epoch = 10
train.Trainer.checkpoint_every_steps = 4
train.Evaluation.batch_size = 4
train.Evaluation.clips_per_video = 2
train.Runtime.verbose = 2
"""


def checkpointed_batches(model_dir: Path) -> int:
    """Batches of the newest checkpoint recorded in ``model_dir`` (0 when none)."""
    try:
        index = json.loads((model_dir / "checkpoints" / "checkpoint.json").read_text())
    except (OSError, ValueError):
        return 0
    return max(c["batches"] for c in index["checkpoints"])


def kill_when_checkpointed(
    victim: Sequence[str],
    victim_dir: Path,
    kill_at: int,
    env: Mapping[str, str],
    timeout: float = 300,
) -> int:
    """Starts ``victim`` and kills it (``kill -9``) once its checkpoint index records at
    least ``kill_at`` batches, while it trains; returns the batches checkpointed."""
    killed = subprocess.Popen(
        victim, cwd=REPO_ROOT, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _kill_when_checkpointed(killed, victim_dir, kill_at, time.monotonic() + timeout)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
    return checkpointed_batches(victim_dir)


def _kill_when_checkpointed(
    killed: subprocess.Popen, victim_dir: Path, kill_at: int, deadline: float
) -> None:
    while checkpointed_batches(victim_dir) < kill_at:
        assert killed.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)


def reference_and_killed(
    reference: Sequence[str],
    victim: Sequence[str],
    victim_dir: Path,
    kill_at: int,
    env: Mapping[str, str],
    timeout: float = 300,
) -> tuple[str, str, int]:
    """Runs both commands at once; kills the victim at ``kill_at`` batches; waits for the
    reference.

    Returns:
        The reference's stdout and stderr, and the victim's checkpointed batches.
    """
    done = subprocess.Popen(
        reference,
        cwd=REPO_ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = subprocess.Popen(
        victim, cwd=REPO_ROOT, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _kill_when_checkpointed(killed, victim_dir, kill_at, time.monotonic() + timeout)
        out, err = done.communicate(timeout=timeout)
        assert done.returncode == 0, err[-4000:]
    finally:
        for process in (done, killed):
            if process.poll() is None:
                process.kill()
                process.wait()
    return out, err, checkpointed_batches(victim_dir)
