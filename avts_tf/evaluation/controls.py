"""A task's training controls over seeds, and whether each removes the heads it should.

A control (``objectives.temporal.control``) removes one cue in training: labels taken
from another example (``permuted_labels``: every head), frames in random order
(``shuffled_frames``: the direction heads), audio of another video (``unrelated_audio``:
cross-modal ordering and retrieval). The run's task names its controls, the metrics each
removes and their chance levels (``Task.controls``, ``Task.control_metrics``).
:func:`read_run` reads a finished run (``avts_tf.experiments.controls`` trains them);
:func:`verdicts` tells, for each head a control removes, where it landed against chance:

* on the **held-out** views of each run (``eval.json``: ordered clips, true labels), and
  their **mean over seeds**. A head fitted to labels its inputs do not hold is a random
  function of features that carry other structure, so one run's held-out accuracy spreads
  around chance by more than sampling error; the mean over seeds is what the control
  predicts (docs/temporal.md, "Controls");
* on the **training views** of the last epoch (TensorBoard's ``epoch_<head>``), where the
  control acts: a head above chance there learned a cue the control should have removed.

``avts-controls`` (:mod:`avts_tf.cli.controls`) runs them and prints the table. It imports
this module before it checks its flags, so what loads TensorFlow is imported inside the
functions.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from avts_tf.errors import UserError
from avts_tf.evaluation import report
from avts_tf.evaluation.run_curves import read_scalars

MARGIN = 0.05
"""How far from chance a removed head may land (the issue's ``chance ± 0.05``)."""


@dataclasses.dataclass(frozen=True)
class ControlRun:
    """One finished run under a control.

    Attributes:
        control: The control (a key of ``removes``).
        seed: ``train.Trainer.seed``.
        held_out: ``eval.json``'s metrics.
        training: The last epoch's training value of each metric logged in training (the
            heads; retrieval has none).
        chance: Chance of each metric the task's controls concern, in table order, on this
            run's held-out set (``Task.control_metrics``).
        model_dir: Where the run is.
        removes: Each control of the run's task -> the metrics it removes
            (``Task.controls``).
        titles: Each metric's column title.
    """

    control: str
    seed: int
    held_out: dict[str, float]
    training: dict[str, float]
    chance: dict[str, float]
    model_dir: str
    removes: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    titles: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def removed(self) -> tuple[str, ...]:
        """The metrics this run's control should bring to chance."""
        return tuple(self.removes.get(self.control, ()))


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Where one head a control removes landed, over the control's runs.

    Attributes:
        control: The control.
        metric: The head's metric (a key of ``ControlRun.chance``).
        chance: Its chance level.
        held_out: Its held-out value in each run, by seed.
        training: Its last-epoch training value in each run (empty for retrieval).
        margin: The allowed distance from chance.
    """

    control: str
    metric: str
    chance: float
    held_out: dict[int, float]
    training: dict[int, float]
    margin: float = MARGIN

    @property
    def mean(self) -> float:
        """Mean of the held-out values over seeds."""
        return sum(self.held_out.values()) / len(self.held_out)

    @property
    def standard_error(self) -> float:
        """Standard error of :attr:`mean` (sample standard deviation over sqrt(seeds))."""
        values = list(self.held_out.values())
        if len(values) < 2:
            return math.nan
        mean = self.mean
        variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        return math.sqrt(variance / len(values))

    @property
    def mean_holds(self) -> bool:
        """Whether the seed mean lies within chance ± margin (rounded to 1e-9)."""
        return round(abs(self.mean - self.chance), 9) <= self.margin

    @property
    def singles_outside(self) -> list[int]:
        """Seeds whose held-out value lies farther than the margin from chance."""
        return [
            seed
            for seed, value in self.held_out.items()
            if round(abs(value - self.chance), 9) > self.margin
        ]

    @property
    def training_outside(self) -> list[int]:
        """Seeds whose training value lies farther than the margin from chance."""
        return [
            seed
            for seed, value in self.training.items()
            if round(abs(value - self.chance), 9) > self.margin
        ]

    def line(self) -> str:
        """One line: chance, seed mean, single runs, training views, and the verdict."""
        seeds = len(self.held_out)
        text = f"{self.control} / {self.metric}: chance {self.chance:.3f}, held-out "
        if seeds > 1:
            text += (
                f"mean {self.mean:.3f} ± {self.standard_error:.3f} (s.e.) over {seeds} "
                "seeds (single runs "
                f"{_span(self.held_out.values())}, {len(self.singles_outside)} of "
                f"{seeds} outside ± {self.margin:g})"
            )
        else:
            text += f"{self.mean:.3f} (one seed)"
        if self.training:
            text += (
                f"; training views {_span(self.training.values())} "
                f"({len(self.training_outside)} of {len(self.training)} outside)"
            )
        what = "mean " if seeds > 1 else ""
        return (
            text + f": {what}{'within' if self.mean_holds else 'NOT within'} chance ± "
            f"{self.margin:g}"
        )


def _span(values) -> str:
    """``"0.484-0.630"``, or the one value."""
    ordered = sorted(values)
    return (
        f"{ordered[0]:.3f}"
        if len(ordered) == 1 or ordered[0] == ordered[-1]
        else f"{ordered[0]:.3f}-{ordered[-1]:.3f}"
    )


def described(model_dir: str | os.PathLike) -> tuple[str, int] | None:
    """The control and seed of the run in ``model_dir`` (None: no run.json there).

    Raises:
        UserError: The run's task has no training controls.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "run.json").is_file():
        return None
    # Loads TensorFlow: imported here, after the command has checked its flags.
    from avts_tf.run_description import RunDescription

    run = RunDescription.read(model_dir)
    return _control_and_seed(model_dir, run, run.build_task())


def _control_and_seed(model_dir: Path, run, task) -> tuple[str, int]:
    if not task.controls():
        raise UserError(
            f"{model_dir} holds a run of another task than the temporal one; "
            "use another --output_dir"
        )
    return task.control, int(run.seed)


def finished(model_dir: str | os.PathLike) -> bool:
    """Whether ``model_dir`` holds a finished run (its run.json and eval.json written)."""
    return (Path(model_dir) / "run.json").is_file() and (Path(model_dir) / "eval.json").is_file()


@functools.lru_cache(maxsize=8)
def _held_out_videos(dataset: str, split: str) -> int:
    """Distinct video ids in ``split`` of ``dataset`` (read once for all runs on it)."""
    # Loads TensorFlow: imported here, after the command has checked its flags.
    from avts_tf.data import records
    from avts_tf.evaluation import records_io

    return len(
        {int(records.video_id(r).numpy()) for r in records_io.parsed_records(dataset, [split])}
    )


def read_run(model_dir: str | os.PathLike) -> ControlRun:
    """The :class:`ControlRun` of a finished run (eval.json, TensorBoard logs)."""
    # Loads TensorFlow: imported here, after the command has checked its flags.
    from avts_tf.run_description import RunDescription

    model_dir = Path(model_dir)
    if not finished(model_dir):
        raise UserError(
            f"{model_dir} holds no finished run (run.json and eval.json); train "
            "it with avts-controls"
        )

    run = RunDescription.read(model_dir)
    task = run.build_task()
    control, seed = _control_and_seed(model_dir, run, task)
    # Chance levels from the task, given the held-out split's distinct videos.
    metrics = task.control_metrics(_held_out_videos(run.dataset, run.eval_split))
    chance = {m.name: m.chance for m in metrics}
    held_out = json.loads((model_dir / "eval.json").read_text(encoding="utf-8"))
    logged = read_scalars(model_dir / "tensorboard").get("train", {})
    training = {m: logged[f"epoch_{m}"][-1][1] for m in chance if logged.get(f"epoch_{m}")}
    return ControlRun(
        control=control,
        seed=seed,
        held_out={m: float(held_out[m]) for m in chance if m in held_out},
        training=training,
        chance=chance,
        model_dir=str(model_dir),
        removes=dict(task.controls()),
        titles={m.name: m.title for m in metrics},
    )


def verdicts(runs: Sequence[ControlRun], margin: float = MARGIN) -> list[Verdict]:
    """One :class:`Verdict` per control and metric it removes, over that control's runs."""
    found = []
    for control, removed in (runs[0].removes if runs else {}).items():
        mine = [run for run in runs if run.control == control]
        for metric in removed:
            held_out = {run.seed: run.held_out[metric] for run in mine if metric in run.held_out}
            if not held_out:
                continue
            found.append(
                Verdict(
                    control=control,
                    metric=metric,
                    chance=float(sum(run.chance[metric] for run in mine) / len(mine)),
                    held_out=held_out,
                    training={
                        run.seed: run.training[metric] for run in mine if metric in run.training
                    },
                    margin=margin,
                )
            )
    return found


def table(runs: Sequence[ControlRun]) -> str:
    """Held-out metrics of every run, a mean row per control of several seeds, and chance.

    A metric the run's control should remove is marked ``*``.
    """
    rows = []
    metrics = list(runs[0].chance) if runs else []
    controls = list(dict.fromkeys(run.control for run in runs))
    for control in controls:
        mine = sorted((run for run in runs if run.control == control), key=lambda r: r.seed)
        removed = mine[0].removed
        for run in mine:
            rows.append(
                [control, str(run.seed)]
                + [_cell(run.held_out.get(metric), metric in removed) for metric in metrics]
            )
        if len(mine) > 1:
            means = [[run.held_out[m] for run in mine if m in run.held_out] for m in metrics]
            rows.append(
                [control, "mean"]
                + [
                    _cell(sum(v) / len(v) if v else None, m in removed)
                    for m, v in zip(metrics, means, strict=True)
                ]
            )
    if runs:
        rows.append(["chance", ""] + [f"{runs[0].chance[m]:.3f}" for m in metrics])
    titles = runs[0].titles if runs else {}
    return report.table(["control", "seed", *(titles.get(m, m) for m in metrics)], rows)


def _cell(value: float | None, removed: bool) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.3f}{'*' if removed else ''}"


def summary(found: Sequence[Verdict]) -> str:
    """The last line: whether every removed head's seed mean is within chance ± margin."""
    if not found:
        return "controls: none run (only 'none'): nothing to compare with chance"
    failing = [f"{v.control} / {v.metric}" for v in found if not v.mean_holds]
    counts = sorted({len(v.held_out) for v in found})
    over = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    over += " seed" if counts == [1] else " seeds"
    if failing:
        return (
            f"controls: seed mean NOT within chance ± {found[0].margin:g} for "
            f"{', '.join(failing)} (over {over})"
        )
    return (
        f"controls: every removed head's seed mean within chance ± {found[0].margin:g} "
        f"(over {over})"
    )


def as_json(runs: Sequence[ControlRun], found: Sequence[Verdict]) -> dict[str, Any]:
    """Runs and verdicts as a JSON-ready dict."""
    return {
        "runs": [
            {k: v for k, v in dataclasses.asdict(run).items() if k not in ("removes", "titles")}
            for run in runs
        ],
        "verdicts": [
            {
                **dataclasses.asdict(v),
                "mean": v.mean,
                "standard_error": None if math.isnan(v.standard_error) else v.standard_error,
                "mean_holds": v.mean_holds,
                "singles_outside": v.singles_outside,
                "training_outside": v.training_outside,
            }
            for v in found
        ],
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
