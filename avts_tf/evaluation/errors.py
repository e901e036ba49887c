"""The error type of bad user input to the evaluation tools (kept for its old name)."""

from __future__ import annotations

from avts_tf.errors import UserError

#: Same class as :class:`avts_tf.errors.UserError`.
BadInput = UserError
