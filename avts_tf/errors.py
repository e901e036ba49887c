"""The error type of a user's mistake (bad flag, missing file, unknown name, ...)."""

from __future__ import annotations


class UserError(ValueError):
    """A problem the user can fix; the message reads ``<problem>; <fix>``.

    The command-line tools report it as one line ``error: <message>`` on stderr and exit
    with code 2, without a traceback (``avts_tf.cli.app.run``).
    """
