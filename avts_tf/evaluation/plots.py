"""PNG charts next to the evaluation tools' JSON (matplotlib, an optional extra).

Each function draws one chart; :func:`save_next_to` writes ``<json stem>.png`` beside a
results file and returns its path, or ``None`` (with a log line) where matplotlib is not
installed (``pip install 'avts_tf[plots]'``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from absl import logging


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def grouped_bars(ax: Any, groups: Mapping[str, Mapping[str, float]], ylabel: str) -> None:
    """Bars of ``{series: {category: value}}``, one colour per series."""
    series = list(groups)
    categories = list(next(iter(groups.values())))
    width = 0.8 / max(len(series), 1)
    for i, name in enumerate(series):
        xs = [c + (i - (len(series) - 1) / 2) * width for c in range(len(categories))]
        bars = ax.bar(xs, [groups[name][c] for c in categories], width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(categories)), categories, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize="small")


def save_next_to(
    json_path: str | os.PathLike, title: str, draw: Callable[[Any], None]
) -> Path | None:
    """Calls ``draw(ax)`` on a new figure and saves it as ``<json_path stem>.png``."""
    plt = _pyplot()
    if plt is None:
        logging.warning(
            "matplotlib is not installed: no chart next to %s (pip install 'avts_tf[plots]').",
            json_path,
        )
        return None
    png = Path(json_path).with_suffix(".png")
    fig, ax = plt.subplots(figsize=(8, 4))
    draw(ax)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png
