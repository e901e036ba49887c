"""Runs a gin recipe end to end through ``tools/train.py`` (a subprocess), as a user would."""

import json
import subprocess
import sys
from pathlib import Path

from checks import REPO_ROOT, subprocess_env


def run_recipe(
    gin_file: str, headline: str, model_dir: Path, cache_dir: Path, *params: str
) -> dict:
    """Trains ``gin_file`` into ``model_dir``; returns ``eval.json``.

    Asserts exit code 0 and that the last line printed is ``headline: <value>``, equal to
    its value in ``eval.json``.
    """
    env = subprocess_env(AVTS_CACHE_DIR=str(cache_dir))
    command = [
        sys.executable,
        "tools/train.py",
        f"--gin_file={gin_file}",
        f"--model_dir={model_dir}",
        "--gin_param=train.Runtime.verbose=2",
        *[f"--gin_param={p}" for p in params],
    ]
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads((model_dir / "eval.json").read_text())
    name, _, value = result.stdout.strip().splitlines()[-1].partition(": ")
    assert name == headline, result.stdout[-2000:]
    # The printed value is eval.json's, to 3 decimals, compared as text (a float comparison
    # within 5e-4 fails on the rounding boundary: 0.5625 prints as 0.562).
    assert value == f"{results[name]:.3f}", (value, results[name])
    return results
