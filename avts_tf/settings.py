"""Checks of numeric settings (gin bindings, constructor arguments) that name the setting."""

from __future__ import annotations

import math
import numbers
from typing import Any


def number_setting(name: str, value: Any, integer: bool = False, zero_allowed: bool = False) -> Any:
    """``value`` as an int or float; a ``ValueError`` naming ``name`` unless it is > 0.

    ``zero_allowed`` accepts 0 too; ``bool``, strings, NaN and infinities are refused.
    """
    kind = int if integer else float
    number = isinstance(value, numbers.Integral if integer else numbers.Real)
    if (
        isinstance(value, bool)
        or not number
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero_allowed)
    ):
        bound = ">= 0" if zero_allowed else "> 0"
        raise ValueError(
            f"{name} must be {'an integer' if integer else 'a number'} {bound}, got {value!r}"
        )
    return kind(value)
