"""The flags several commands take, defined once: the run, the data, the output, quiet.

A command calls the ``define_*`` functions it needs at import (one command runs per
process); the flags count as the command's own in ``--helpshort``. Each keeps the name,
default and help text its commands have always shown; the help differs where the
commands read different things (a run, or a ``.keras`` tower too).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from absl import flags

from avts_tf.data.ingestion.sources import LAYOUTS
from avts_tf.data.manifest import DEFAULTS
from avts_tf.evaluation.prepared import DataSource, run_frames

# Flags defined by the functions below are key flags of the command that calls them.
flags.disclaim_key_flags()
FLAGS = flags.FLAGS

RUN = "A training run's model_dir."
#: The refusal of a missing ``--checkpoint`` that may also be a ``.keras`` tower.
TOWER_OR_RUN = "does not exist; give a .keras tower or a training run's model_dir"


def exists_or_none(path: str | None) -> bool:
    """Validator: no value, or a path that exists."""
    return path is None or Path(path).exists()


def integer_list(values: list[str] | None) -> bool:
    """Validator of a list flag of non-negative integers (``0,20``)."""
    return all(v.strip().isdigit() for v in values or [])


def split_list(text: str | list[str] | None) -> list[str] | None:
    """``"a,b"`` (or ``["a", "b"]``) -> ``["a", "b"]``; empty -> ``None``."""
    if isinstance(text, (list, tuple)):
        text = ",".join(text)
    items = [s.strip() for s in (text or "").split(",") if s.strip()]
    return items or None


# -- the run --------------------------------------------------------------------------


def define_run(
    help: str = RUN,
    name: str = "checkpoint",
    alias: str | None = "model_dir",
    required: bool = True,
    check: tuple[Callable[[str | None], bool], str] | None = None,
) -> None:
    """The run (or tower) a command reads: ``--checkpoint``, also called ``--model_dir``.

    Args:
        help: The flag's help text.
        name: The flag's name.
        alias: Its other name (``avts-train`` says model_dir), or None.
        required: Whether the command needs it.
        check: ``(validator, message)`` run on the value before the command starts.
    """
    flags.DEFINE_string(name, None, help, required=required)
    if check is not None:
        flags.register_validator(name, *check)
    if alias:
        flags.DEFINE_alias(alias, name)


# -- the data -------------------------------------------------------------------------


def define_data(help: str, check: str | None = None) -> None:
    """``--data`` alone: a prepared dataset (``check``: the message when it does not exist)."""
    flags.DEFINE_string("data", None, help)
    if check is not None:
        flags.register_validator("data", exists_or_none, check)


def define_data_flags(required: bool = True) -> None:
    """``--data`` (prepared folder or raw media) and how raw media is prepared."""
    flags.DEFINE_string(
        "data",
        None,
        "A prepared dataset folder, or media (folder, CSV, or a known layout) "
        "that is prepared first.",
        required=required,
    )
    flags.register_validator(
        "data",
        exists_or_none,
        "does not exist; give a prepared dataset folder or media (folder, CSV, dataset root)",
    )
    flags.DEFINE_enum(
        "layout", DEFAULTS.layout, list(LAYOUTS), "Layout of raw media (see avts-prepare)."
    )
    flags.DEFINE_integer("fold", DEFAULTS.fold, "Official split of raw media (1-3).", lower_bound=1)
    flags.DEFINE_string(
        "prepared_dir",
        None,
        "Where raw media is prepared (kept and re-used); default: a temporary folder.",
    )
    flags.DEFINE_float(
        "fps",
        DEFAULTS.fps,
        "Frame rate when preparing (default: the run's dataset's, where a run is given).",
        lower_bound=0.1,
    )
    flags.DEFINE_integer(
        "short_side",
        DEFAULTS.short_side,
        "Frame size when preparing (default: the run's dataset's, where a run is given).",
        lower_bound=8,
    )
    flags.DEFINE_integer("workers", 1, "Decoding processes when preparing.", lower_bound=1)


def data_source(run: str | Path | None = None) -> DataSource:
    """The values of the data flags (:func:`define_data_flags`).

    Args:
        run: A training run whose towers read the data: raw media is then prepared at
            the run's frame rate and frame size (its dataset's ``fps`` and
            ``short_side``) unless ``--fps`` / ``--short_side`` are given.
    """
    values = {f.name: FLAGS[f.name].value for f in dataclasses.fields(DataSource)}
    for name, value in (run_frames(run) if run is not None else {}).items():
        if not FLAGS[name].present:
            values[name] = value
    return DataSource(**values)


def define_splits(train_help: str = "Training split.", test_help: str = "Test split.") -> None:
    """``--train_split`` (default ``train``) and ``--test_split`` (default ``test``)."""
    flags.DEFINE_string("train_split", "train", train_help)
    flags.DEFINE_string("test_split", "test", test_help)


# -- output ---------------------------------------------------------------------------


def define_output(
    help: str, required: bool = False, check: tuple[Callable[[str | None], bool], str] | None = None
) -> None:
    """``--output``: the file or folder a command writes."""
    flags.DEFINE_string("output", None, help, required=required)
    if check is not None:
        flags.register_validator("output", *check)


def define_output_json(help: str = "Also write the results to this JSON file.") -> None:
    """``--output_json``: where the results are also written."""
    flags.DEFINE_string("output_json", None, help)


def define_output_dir(default: str, help: str) -> None:
    """``--output_dir``: where a command that trains runs writes them and its report."""
    flags.DEFINE_string("output_dir", default, help)


def define_quiet(help: str = "No progress bars.") -> None:
    """``--quiet``: no progress bars."""
    flags.DEFINE_bool("quiet", False, help)
