"""Trains a recipe under each training control and seed (``avts-controls``).

A run goes to ``<output_dir>/<control>/seed<seed>``; a finished one is read back
(:func:`avts_tf.evaluation.controls.read_run`), an interrupted one resumes. The verdicts
against chance are :mod:`avts_tf.evaluation.controls`'.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import gin

from avts_tf import atomic, config
from avts_tf.errors import UserError
from avts_tf.evaluation import controls

CONTROLS = ("none", "permuted_labels", "shuffled_frames", "unrelated_audio")
"""The temporal task's controls (``TemporalContrastive.controls()``), named here without
importing TensorFlow so that ``avts-controls`` checks its flags first."""


def run_folder(output_dir: str | os.PathLike, control: str, seed: int) -> Path:
    """Where the run of ``control`` at ``seed`` goes: ``<output_dir>/<control>/seed<seed>``."""
    return Path(output_dir) / control / f"seed{seed}"


def train_control(
    control: str,
    seed: int,
    output_dir: str | os.PathLike,
    recipes: Sequence[str],
    bindings: Sequence[str] = (),
    verbose: int | str = 0,
) -> controls.ControlRun:
    """Trains ``recipes`` under ``control`` at ``seed`` (or reuses its finished run).

    The run goes to :func:`run_folder`. A finished one (``eval.json`` written) is read
    back; an interrupted one resumes where its checkpoints end (``train.run``).

    Raises:
        UserError: The folder holds a run of another control or seed, or of another task.
    """
    # Loads TensorFlow: imported here, after the command has checked its flags.
    from avts_tf import train

    if control not in CONTROLS:
        raise UserError(f"unknown control {control!r}; valid: {', '.join(CONTROLS)}")
    model_dir = run_folder(output_dir, control, seed)
    found = controls.described(model_dir)
    if found is not None and found != (control, seed):
        raise UserError(
            f"{model_dir} holds a run of control {found[0]!r} at seed {found[1]}; "
            "use --fresh or another --output_dir"
        )
    asked = {"recipes": list(recipes), "bindings": list(bindings)}
    marker = model_dir.with_name(f"{model_dir.name}.json")  # Beside the run, not in it.
    if found is not None and marker.is_file():
        before = json.loads(marker.read_text(encoding="utf-8"))
        if before != asked:
            raise UserError(
                f"{model_dir} holds a run of recipes {before['recipes']} with bindings "
                f"{before['bindings']}, not {asked['recipes']} with {asked['bindings']}; use "
                "--fresh or another --output_dir"
            )
    if not controls.finished(model_dir):
        gin.clear_config()
        config.parse_gin(
            list(recipes),
            [
                *bindings,
                f"objectives.temporal.control = '{control}'",
                f"train.Trainer.seed = {seed}",
            ],
        )
        try:
            selector = _objective_selector()
            if selector != "objectives.temporal":
                raise UserError(
                    f"{', '.join(recipes)} trains {selector or 'no objective'}, "
                    "not the temporal task; give a recipe whose train.Model.objective "
                    "is @objectives.temporal (e.g. tssl_quickstart)"
                )
            model_dir.mkdir(parents=True, exist_ok=True)
            atomic.write_json(marker, asked)
            train.run(model_dir=model_dir, runtime=train.Runtime(verbose=verbose))
        finally:
            gin.clear_config()
    return controls.read_run(model_dir)


def train_all(
    output_dir: str | os.PathLike,
    names: Sequence[str],
    seeds: Sequence[int],
    recipes: Sequence[str],
    bindings: Sequence[str] = (),
    fresh: bool = False,
    on_run: Callable[[controls.ControlRun, float | None], None] | None = None,
) -> list[controls.ControlRun]:
    """:func:`train_control` for every control and seed, in the order given.

    Args:
        output_dir: Folder of the runs.
        names: Controls (keys of :data:`CONTROLS`).
        seeds: ``train.Trainer.seed`` of each run.
        recipes: Recipe of every run.
        bindings: Extra gin bindings of every run.
        fresh: Delete the runs of these controls and seeds first.
        on_run: Called with each run as it is ready and the seconds it trained (None:
            reused).
    """
    runs = []
    for control in dict.fromkeys(names):
        for seed in dict.fromkeys(seeds):
            model_dir = run_folder(output_dir, control, seed)
            if fresh and model_dir.exists():
                shutil.rmtree(model_dir)
            start = time.monotonic()
            reused = controls.finished(model_dir)
            run = train_control(control, seed, output_dir, recipes, bindings)
            if on_run is not None:
                on_run(run, None if reused else time.monotonic() - start)
            runs.append(run)
    return runs


def _objective_selector() -> str | None:
    """The configurable bound to ``train.Model.objective`` (``objectives.temporal``), if any."""
    try:
        return getattr(gin.query_parameter("train.Model.objective"), "selector", None)
    except ValueError:  # Not bound.
        return None
