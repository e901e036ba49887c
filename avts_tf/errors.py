"""The errors the tools report as one line: a user's mistake, a run stopped by its surroundings."""

from __future__ import annotations

import re

_GIN_NOTE = "\n  In call to configurable"


def without_gin_note(message: object) -> str:
    """``message`` without gin's note on an error raised in a configured call.

    Gin appends ``In call to configurable 'name' ...`` lines to such errors.
    """
    return str(message).split(_GIN_NOTE)[0]


def failed_binding(error: BaseException) -> str | None:
    """The configurable whose call raised ``error`` while gin evaluated a call's arguments.

    Gin evaluates bindings such as ``train.Model.clip_spec = @data.ClipSpec()`` before the
    configured function runs and notes ``In call to configurable 'ClipSpec'``; an error from
    inside ``train.run`` also carries ``In call to configurable 'run'``.

    Returns:
        The innermost configurable's name, or ``None`` when ``error`` has no gin note or
        came from inside ``run``.
    """
    names = re.findall(r"In call to configurable '([^']+)'", str(error))
    return names[0] if names and "run" not in names else None


class UserError(ValueError):
    """A problem the user can fix; the message reads ``<problem>; <fix>``.

    The command-line tools report it as one line ``error: <message>`` on stderr and exit
    with code 2, without a traceback (``avts_tf.cli.app.run``).
    """


class RunInterrupted(RuntimeError):
    """A run stopped by its surroundings, not by a mistake: a lost worker, a full disk.

    The message reads ``<what happened>; <how to continue>``; the command-line tools
    print it as one line ``error: <message>`` and exit with code 3.
    """

    exit_code = 3


class TrainingDiverged(RunInterrupted, FloatingPointError):
    """The loss or the weights became non-finite; the last good checkpoint is kept.

    A :class:`FloatingPointError` (what ``avts_tf.train.run`` documents) that the tools
    report as one line, exit code 3.
    """


def first_names(names: list[str], shown: int = 3) -> str:
    """``a, b, c and 2 more``: the first ``shown`` of ``names`` for a one-line message."""
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {rest} more" if rest > 0 else "")
