"""Helpers of the evaluation tests: tool runners and their one-line error check."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys

from tiny import REPO_ROOT


def run_subprocess(tool: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs ``tools/<tool>.py`` with this interpreter."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / f"{tool}.py"), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_in_process(tool: str, *args: str) -> tuple[int, str, str]:
    """Runs a tool's ``main`` in this process: ``(exit code, stdout, stderr)``.

    The tool's module is imported afresh and its absl flags removed afterwards, so tools
    defining the same flag names (``--checkpoint``, ``--data``) run one after another.
    """
    from absl import app, flags

    app.define_help_flags()  # Once per process; kept across tools.
    before = set(flags.FLAGS)
    name = f"avts_tf.cli.{tool}"
    sys.modules.pop(name, None)
    module = importlib.import_module(name)
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = [f"{tool}.py", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            module.main()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        sys.argv = argv
        for flag in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, flag)
        sys.modules.pop(name, None)
    return code, out.getvalue(), err.getvalue()
