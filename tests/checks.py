"""Assertions and process settings the tests share (``import checks``; no TensorFlow)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def subprocess_env(*python_path: str | os.PathLike, **extra: str) -> dict[str, str]:
    """The environment of a test's child process: quiet TensorFlow on the CPU, ``tests/``
    (for ``import tiny``) and ``python_path`` importable, ``extra`` variables set."""
    path = [str(p) for p in python_path] + [str(REPO_ROOT / "tests")]
    path += [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(path),
        TF_CPP_MIN_LOG_LEVEL="3",
        CUDA_VISIBLE_DEVICES="",
        **extra,
    )


def assert_one_error_line(returncode: int, stderr: str, *words: str, code: int = 2) -> str:
    """Exit ``code``, no traceback, exactly one ``error: `` line on stderr and it is the
    last (start-up logs may precede it); each of ``words`` in it. Returns the line."""
    assert returncode == code, (returncode, stderr)
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error")]
    assert errors == lines[-1:] and errors[0].startswith("error: "), stderr
    missing = [word for word in words if word not in errors[0]]
    assert not missing, (missing, errors[0])
    return errors[0]


def error_line_of(result, *words: str, code: int = 2) -> str:
    """:func:`assert_one_error_line` of a ``subprocess.CompletedProcess``."""
    return assert_one_error_line(result.returncode, result.stderr, *words, code=code)
