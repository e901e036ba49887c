"""The error type of a user's mistake (bad flag, missing file, unknown name, ...)."""

from __future__ import annotations


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
