"""Plain-text result tables and JSON output."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from avts_tf import atomic


def mean_std(mean: float, std: float | None = None, scale: float = 100.0) -> str:
    """``"87.5 ± 2.1"`` (percent by default); only the mean when ``std`` is ``None``."""
    if std is None:
        return f"{mean * scale:.1f}"
    return f"{mean * scale:.1f} ± {std * scale:.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A left-aligned text table with a rule under the header."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Writes ``data`` as indented JSON (atomically: temporary file, then rename)."""
    atomic.write_json(path, data)
