"""A training run's curves from its TensorBoard logs, drawn as one PNG.

Reads the epoch scalars that ``avts-train`` writes (``<model_dir>/tensorboard/train`` and,
with ``train.Trainer.eval_every_steps``, ``.../validation``) and draws one panel per metric,
training and held-out curves together.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from absl import logging

from avts_tf.errors import UserError
from avts_tf.evaluation.plots import _pyplot


def read_scalars(log_dir: str | os.PathLike) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{"train" | "validation": {tag: [(step, value), ...]}}`` of a run's TensorBoard logs.

    Raises:
        UserError: ``log_dir`` holds no event files.
    """
    import tensorflow as tf  # avts-controls imports this module before it checks its flags

    found: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    files = sorted(Path(log_dir).rglob("events.out.tfevents.*"))
    if not files:
        raise UserError(
            f"no TensorBoard logs under {log_dir}; give the model_dir of an avts-train run"
        )
    for path in files:
        stage = "validation" if "validation" in path.parts else "train"
        for event in _events(path):
            for value in event.summary.value:
                if value.HasField("tensor"):
                    number = float(tf.make_ndarray(value.tensor))
                else:
                    number = float(value.simple_value)
                found[stage][value.tag].append((int(event.step), number))
    return {
        stage: {tag: sorted(points) for tag, points in tags.items()}
        for stage, tags in found.items()
    }


def _events(path: Path) -> Iterator[Any]:
    """The events of one TensorBoard file, up to a torn last record (a run killed mid-write)."""
    import tensorflow as tf  # avts-controls imports this module before it checks its flags

    records = iter(tf.data.TFRecordDataset(str(path)))
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except tf.errors.DataLossError:
            logging.warning(
                "%s ends in a torn record (the run was stopped while writing it); "
                "read what came before",
                path,
            )
            return
        yield tf.compat.v1.Event.FromString(record.numpy())


def plot_run(
    model_dir: str | os.PathLike, png: str | os.PathLike, tags: list[str] | None = None
) -> list[str]:
    """Draws the run's epoch curves into ``png``; returns the tags drawn.

    Args:
        model_dir: The run.
        png: Output image.
        tags: Tags to draw (default: every ``epoch_*`` tag except ``epoch_learning_rate``
            and throughput, loss first).
    """
    plt = _pyplot()
    if plt is None:
        raise UserError("plotting needs matplotlib; pip install 'avts_tf[plots]'")
    scalars = read_scalars(Path(model_dir) / "tensorboard")
    every = sorted({t for stage in scalars.values() for t in stage if t.startswith("epoch_")})
    skip = {"epoch_learning_rate", "epoch_clips_per_second"}
    chosen = tags or sorted(
        (t for t in every if t not in skip), key=lambda t: (t != "epoch_loss", t)
    )
    if not chosen:
        raise UserError(
            f"no epoch curves in {model_dir}/tensorboard; train for one epoch "
            "(train.Trainer.steps_per_epoch batches) or more"
        )
    columns = min(3, len(chosen))
    rows = -(-len(chosen) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for ax, tag in zip(axes.flat, chosen, strict=False):
        for stage, style in (("train", "-"), ("validation", "o--")):
            points = scalars.get(stage, {}).get(tag)
            if points:
                ax.plot(
                    [p[0] + 1 for p in points],
                    [p[1] for p in points],
                    style,
                    label=stage,
                    markersize=3,
                )
        ax.set_title(tag.removeprefix("epoch_"), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return chosen
