"""Shared pieces of the evaluation tools: error exit, data flags, quiet logging."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from avts_tf.data.manifest import DEFAULTS
from avts_tf.evaluation.errors import BadInput


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` whose usage errors are one ``error: ...`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:  # noqa: D102
        from avts_tf.cli import app

        app.fail(f"{message}; see --help for the options")


def run_tool(main: Callable[[], object]) -> None:
    """Runs a tool's ``main``; bad input exits 2 with one ``error: ...`` line on stderr."""
    from avts_tf.cli import app

    try:
        main()
    except (BadInput, FileNotFoundError) as err:
        app.fail(str(err))


def quiet_logs() -> None:
    """Keeps TensorFlow's and absl's info chatter off the console."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def add_data_flags(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--data`` (prepared folder or raw media) and how to prepare raw media."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data", required=required,
        help="a prepared dataset folder, or media (folder, CSV, or a known layout) that is "
             "prepared first",
    )
    group.add_argument("--layout", default=DEFAULTS.layout,
                       help="layout of raw media (see prepare_data)")
    group.add_argument("--fold", type=int, default=DEFAULTS.fold,
                       help="official split of raw media (1-3)")
    group.add_argument(
        "--prepared_dir", default=None,
        help="where raw media is prepared (kept and re-used); default: a temporary folder",
    )
    group.add_argument("--fps", type=float, default=DEFAULTS.fps,
                       help="frame rate when preparing")
    group.add_argument("--short_side", type=int, default=DEFAULTS.short_side,
                       help="frame size when preparing")
    group.add_argument("--workers", type=int, default=1, help="decoding processes when preparing")


def prepared_data(
    args: argparse.Namespace,
    stack: contextlib.ExitStack,
    sample_rate: int = DEFAULTS.sample_rate,
    audio_only: bool = False,
) -> Path:
    """The prepared dataset named by the data flags (raw media is prepared first)."""
    from avts_tf.evaluation import records_io

    if records_io.is_prepared(args.data):
        return Path(args.data)
    if not Path(args.data).exists():
        raise BadInput(f"dataset {args.data} does not exist")
    work = args.prepared_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="avts_"))
    return records_io.ensure_prepared(
        args.data, work, layout=args.layout, fold=args.fold, sample_rate=sample_rate,
        fps=args.fps, short_side=args.short_side, audio_only=audio_only, workers=args.workers,
    )


def split_list(text: str | None) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]``; empty -> ``None``."""
    items = [s.strip() for s in (text or "").split(",") if s.strip()]
    return items or None
