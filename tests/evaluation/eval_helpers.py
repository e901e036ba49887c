"""Helpers of the evaluation tests: a tiny finished training run and tool runners.

Not a conftest.py: test modules elsewhere import the root conftest by name.
"""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT, tiny_audio_tower, tiny_video_tower

# The run's settings, matching ``tiny_prepared`` (8 fps): 4 frames = 0.5 s of audio =
# 24 log-mel frames of 16 bands, the tiny audio tower's input.
OPERATIVE_CONFIG = """
train.run.clip_spec = @data.ClipSpec()
data.ClipSpec.num_frames = 4
data.ClipSpec.crop_size = 32
data.ClipSpec.log_mel = @data.LogMelSpec()
data.LogMelSpec.mel_bins = 16
data.LogMelSpec.hop_s = 0.02
data.LogMelSpec.window_s = 0.04
train.run.objective = @objectives.contrastive
objectives.contrastive.margin = 1.0
"""


def make_tiny_run(run: Path) -> Path:
    """A model_dir as ``train.run`` leaves it: two ``.keras`` towers and the operative config."""
    import keras

    keras.utils.set_random_seed(0)
    run.mkdir(parents=True, exist_ok=True)
    tiny_video_tower().save(run / "video_tower.keras")
    tiny_audio_tower().save(run / "audio_tower.keras")
    (run / "operative_config.gin").write_text(OPERATIVE_CONFIG, encoding="utf-8")
    return run


def run_subprocess(tool: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs ``tools/<tool>.py`` with this interpreter."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / f"{tool}.py"), *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def run_in_process(tool: str, *args: str) -> tuple[int, str, str]:
    """Runs a tool's ``main`` in this process: ``(exit code, stdout, stderr)``."""
    module = runpy.run_path(str(REPO_ROOT / "tools" / f"{tool}.py"), run_name="tool")
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = [f"{tool}.py", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            module["cli"].run_tool(module["main"])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, stderr: str, *words: str) -> str:
    """Checks the tool failed with exit 2 and one ``error:`` line, no traceback."""
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), stderr
    for word in words:
        assert word in last, last
    return last
