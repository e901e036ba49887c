"""The error type of bad user input to the evaluation tools."""

from __future__ import annotations


class BadInput(ValueError):
    """A user-facing input problem (missing checkpoint, unknown layer, empty set, ...).

    The tools report it as one line on stderr and exit with code 2
    (``avts_tf.evaluation.cli.run_tool``).
    """
