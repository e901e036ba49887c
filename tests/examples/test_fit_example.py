"""The plain-Keras example script runs end to end (no gin)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fit_example_runs_and_reports_sync_accuracy(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "fit_example.py"), "--steps", "3",
         "--batch_size", "4", "--num_videos", "8", "--cache_dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("sync_accuracy: ")
    assert 0.0 <= float(last.split(": ")[1]) <= 1.0
