"""Shared pieces of the evaluation tools: the data flags (absl), quiet logging, help text.

Each tool in :mod:`avts_tf.cli` defines its flags at import, so two tools never share one
process; :func:`define_data_flags` adds the flags naming the data a tool reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from absl import flags

from avts_tf.data.ingestion.sources import LAYOUTS
from avts_tf.data.manifest import DEFAULTS
from avts_tf.errors import UserError

FLAGS = flags.FLAGS


def quiet_logs() -> None:
    """Keeps TensorFlow's and absl's info chatter off the console."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def exists_or_none(path: str | None) -> bool:
    """Validator: no value, or a path that exists."""
    return path is None or Path(path).exists()


def define_data_flags(required: bool = True) -> None:
    """``--data`` (prepared folder or raw media) and how raw media is prepared."""
    flags.DEFINE_string(
        "data", None, "A prepared dataset folder, or media (folder, CSV, or a known layout) "
        "that is prepared first.", required=required)
    flags.register_validator("data", exists_or_none, "does not exist; give a prepared "
                             "dataset folder or media (folder, CSV, dataset root)")
    flags.DEFINE_enum("layout", DEFAULTS.layout, list(LAYOUTS), "Layout of raw media (see "
                      "avts-prepare).")
    flags.DEFINE_integer("fold", DEFAULTS.fold, "Official split of raw media (1-3).",
                         lower_bound=1)
    flags.DEFINE_string("prepared_dir", None, "Where raw media is prepared (kept and re-used); "
                        "default: a temporary folder.")
    flags.DEFINE_float("fps", DEFAULTS.fps, "Frame rate when preparing (default: the run's "
                       "dataset's, where a run is given).", lower_bound=0.1)
    flags.DEFINE_integer("short_side", DEFAULTS.short_side, "Frame size when preparing "
                         "(default: the run's dataset's, where a run is given).", lower_bound=8)
    flags.DEFINE_integer("workers", 1, "Decoding processes when preparing.", lower_bound=1)


@dataclasses.dataclass
class DataSource:
    """The values of the data flags (:func:`define_data_flags`)."""

    data: str | None
    layout: str = DEFAULTS.layout
    fold: int = DEFAULTS.fold
    prepared_dir: str | None = None
    fps: float = DEFAULTS.fps
    short_side: int = DEFAULTS.short_side
    workers: int = 1

    @classmethod
    def from_flags(cls, run: str | Path | None = None) -> DataSource:
        """The data flags' parsed values.

        Args:
            run: A training run whose towers read the data: raw media is then prepared at
                the run's frame rate and frame size (its dataset's ``fps`` and
                ``short_side``) unless ``--fps`` / ``--short_side`` are given.
        """
        values = {f.name: FLAGS[f.name].value for f in dataclasses.fields(cls)}
        run_values = _run_frames(run) if run is not None else {}
        for name, value in run_values.items():
            if not FLAGS[name].present:
                values[name] = value
        return cls(**values)


def _run_frames(run: str | Path) -> dict:
    """``fps`` and ``short_side`` of ``run``'s training data, as far as they are known."""
    from avts_tf import portable
    from avts_tf.evaluation import checkpoint

    folder = checkpoint.run_dir(run)
    if folder is None:
        return {}
    description = checkpoint.run_description(folder)
    ingest = portable.run_ingest_config(description)
    frames = {"fps": description.fps}
    if ingest is not None:
        frames["short_side"] = ingest.short_side
    return frames


def prepared_data(
    source: DataSource,
    stack: contextlib.ExitStack,
    sample_rate: int = DEFAULTS.sample_rate,
    audio_only: bool = False,
    video_only: bool = False,
    test_fraction: float | None = None,
) -> Path:
    """The prepared dataset named by the data flags (raw media is prepared first).

    ``audio_only`` keeps files without video, ``video_only`` files without audio: what a
    tool that reads one tower's modality should keep. ``test_fraction`` holds out that
    share of each label of a folder as split ``test``.
    """
    from avts_tf.evaluation import records_io

    if records_io.is_prepared(source.data):
        return Path(source.data)
    if not Path(source.data).exists():
        raise UserError(f"dataset {source.data} does not exist; give a prepared dataset folder or "
                        "media (a folder, a CSV or a dataset root)")
    work = source.prepared_dir
    if work is None:
        work = stack.enter_context(tempfile.TemporaryDirectory(prefix="avts_"))
        stack.push(_naming_the_media(work, source.data))
    return records_io.ensure_prepared(
        source.data, work, layout=source.layout, fold=source.fold, sample_rate=sample_rate,
        fps=source.fps, short_side=source.short_side, audio_only=audio_only,
        video_only=video_only, test_fraction=test_fraction, workers=source.workers,
    )


def _naming_the_media(work: str, media: str) -> Callable[..., bool]:
    """An exit callback: a user error naming the temporary folder ``work`` names ``media``.

    Raw media is prepared into a folder the user never sees; a later refusal of the
    prepared data (no labels, no video frames) should name what they gave.
    """
    def rename(exc_type: Any, exc: BaseException | None, traceback: Any) -> bool:
        del exc_type, traceback
        if isinstance(exc, UserError) and exc.args and isinstance(exc.args[0], str):
            exc.args = (exc.args[0].replace(work, f"{media} (as prepared)"), *exc.args[1:])
        return False  # The error goes on.

    return rename


def split_list(text: str | list[str] | None) -> list[str] | None:
    """``"a,b"`` (or ``["a", "b"]``) -> ``["a", "b"]``; empty -> ``None``."""
    if isinstance(text, (list, tuple)):
        text = ",".join(text)
    items = [s.strip() for s in (text or "").split(",") if s.strip()]
    return items or None


def integer_list(values: list[str] | None) -> bool:
    """Validator of a list flag of non-negative integers (``0,20``)."""
    return all(v.strip().isdigit() for v in values or [])
