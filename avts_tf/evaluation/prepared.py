"""The dataset a tool reads: a prepared folder, or media prepared first.

:class:`DataSource` names it (the commands fill it from their data flags,
``avts_tf.cli.flags``); :func:`prepared_data` prepares media into a folder the tool reads;
:func:`run_frames` gives the frame rate and size a run's towers were trained on. What
loads TensorFlow is imported inside the functions: commands import this module before
they parse their flags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from avts_tf.data.manifest import DEFAULTS
from avts_tf.errors import UserError


@dataclasses.dataclass
class DataSource:
    """Where a tool's data comes from: a prepared folder, or media and how to prepare it.

    Attributes:
        data: A prepared dataset folder, or media (a folder, a CSV, a known layout).
        layout: The media's layout (``avts-prepare --layout``).
        fold: Official split of a layout that has folds.
        prepared_dir: Where media is prepared (kept and re-used); None: a temporary folder.
        fps: Frame rate when preparing.
        short_side: Frame size when preparing.
        workers: Decoding processes when preparing.
    """

    data: str | None
    layout: str = DEFAULTS.layout
    fold: int = DEFAULTS.fold
    prepared_dir: str | None = None
    fps: float = DEFAULTS.fps
    short_side: int = DEFAULTS.short_side
    workers: int = 1


def run_frames(run: str | Path) -> dict:
    """``fps`` and ``short_side`` of ``run``'s training data, as far as they are known."""
    # Loads TensorFlow: imported here, after the command has checked its flags.
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
    """The prepared dataset ``source`` names (raw media is prepared first).

    ``audio_only`` keeps files without video, ``video_only`` files without audio: what a
    tool that reads one tower's modality should keep. ``test_fraction`` holds out that
    share of each label of a folder as split ``test``.
    """
    # Loads TensorFlow: imported here, after the command has checked its flags.
    from avts_tf.evaluation import records_io

    if records_io.is_prepared(source.data):
        return Path(source.data)
    if not Path(source.data).exists():
        raise UserError(
            f"dataset {source.data} does not exist; give a prepared dataset folder or "
            "media (a folder, a CSV or a dataset root)"
        )
    work = source.prepared_dir
    if work is None:
        work = stack.enter_context(tempfile.TemporaryDirectory(prefix="avts_"))
        stack.push(_naming_the_media(work, source.data))
    return records_io.ensure_prepared(
        source.data,
        work,
        layout=source.layout,
        fold=source.fold,
        sample_rate=sample_rate,
        fps=source.fps,
        short_side=source.short_side,
        audio_only=audio_only,
        video_only=video_only,
        test_fraction=test_fraction,
        workers=source.workers,
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
