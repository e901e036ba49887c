"""The curriculum ablation of AVTS (seed 003's table), and helpers for gin recipes.

* ``epochs_to_steps`` (defined in ``avts_tf.train``, re-exported here): gin has no
  arithmetic, so recipes state step counts in epochs (``@train.epochs_to_steps()`` with
  ``steps_per_epoch = %STEPS_PER_EPOCH``).
* ``PeriodicSyncEvaluation``: a Keras callback that evaluates sync accuracy on a held-out
  dataset every N optimizer steps, without disturbing the training metrics.
* ``run_all`` (``run_variant`` each) / ``format_table`` / ``plot_history``: what
  ``avts-ablate`` runs: one gin recipe per variant (easy only, hard only, curriculum) with
  the same step budget, then one table of accuracy on easy-negative and hard-negative test
  pairs.

How negatives are mixed: the curriculum gives a mixture over ``("easy", "hard",
"super_hard")`` at each optimizer step; inside ``train_step`` the objective draws one kind
per example from that mixture (stateless, seeded by the step) and takes that example's
negative audio from the matching source (next example of the batch for easy, the
``audio_hard`` / ``audio_super_hard`` windows cut by the pipeline otherwise). A "mixture
sampler" is therefore a curriculum: ``@curricula.constant()`` with
``curricula.constant.mixture = {"easy": 0.75, "hard": 0.25}``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gin
import keras
import tensorflow as tf

from avts_tf import config, train
from avts_tf.data import pipeline
from avts_tf.errors import UserError
from avts_tf.run_description import RunDescription
from avts_tf.train import epochs_to_steps  # noqa: F401  (re-exported)

VARIANTS: dict[str, str] = {
    "easy": "gin/ablation_easy.gin",
    "hard": "gin/ablation_hard.gin",
    "curriculum": "gin/ablation_curriculum.gin",
}
"""Ablation variants and their recipes (paths relative to the repository root)."""

LABELS: dict[str, str] = {
    "easy": "easy only",
    "hard": "hard only",
    "curriculum": "curriculum easy -> 75/25",
}

_SEARCH_PATHS: set[str] = set()

SWITCH_FRACTION = 50 / 90
"""Where the paper's curriculum switches (epoch 50 of 90), as a fraction of training."""


class PeriodicSyncEvaluation(keras.callbacks.Callback):
    """Evaluates the model on a held-out dataset every ``every_n_steps`` optimizer steps.

    Evaluation resets the model's metrics, so their state is saved before and restored
    after, and the training logs of the epoch stay those of training. Results are kept in
    ``history`` (and appended to ``history_path`` as JSON lines, so a resumed run keeps
    the points of its first part).

    Args:
        dataset: Evaluation batches (``pipeline.eval_dataset``; with hard negatives cut,
            ``sync_accuracy_hard`` is reported next to ``sync_accuracy`` on easy pairs), or
            a function returning them, called when training begins (after ``train.run``
            has seeded TensorFlow, so the batches equal those of its final evaluation).
        every_n_steps: Evaluation interval in optimizer steps.
        at_start: Also evaluate before the first step (step 0).
        history_path: Optional JSON-lines file of ``{"step": ..., metrics...}``.
    """

    def __init__(
        self,
        dataset: tf.data.Dataset | Callable[[], tf.data.Dataset],
        every_n_steps: int,
        at_start: bool = True,
        history_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if every_n_steps <= 0:
            raise ValueError(f"every_n_steps must be > 0, got {every_n_steps}.")
        self.dataset = dataset
        self.every_n_steps = int(every_n_steps)
        self.at_start = at_start
        self.history_path = Path(history_path) if history_path else None
        self.history: list[dict[str, float]] = []
        self._start = time.monotonic()

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def _evaluate(self) -> None:
        step = self._step()
        if self.history and self.history[-1]["step"] == step:
            return
        saved = [[v.numpy() for v in m.variables] for m in self.model.metrics]
        if callable(self.dataset):
            self.dataset = self.dataset()
        results = self.model.evaluate(self.dataset, return_dict=True, verbose=0)
        for metric, values in zip(self.model.metrics, saved, strict=True):
            for variable, value in zip(metric.variables, values, strict=True):
                variable.assign(value)
        point = {
            "step": step,
            "wall_s": round(time.monotonic() - self._start, 1),
            **{k: float(v) for k, v in results.items()},
        }
        self.history.append(point)
        if self.history_path:
            with open(self.history_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(point) + "\n")

    def on_train_begin(self, logs=None):  # noqa: D102
        self._start = time.monotonic()
        if self.at_start and self._step() == 0:
            self._evaluate()

    def on_train_batch_end(self, batch, logs=None):  # noqa: D102
        if self._step() % self.every_n_steps == 0:
            self._evaluate()

    def on_train_end(self, logs=None):  # noqa: D102
        self._evaluate()


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """Points written by ``PeriodicSyncEvaluation(history_path=...)``, by step, last wins."""
    points: dict[int, dict[str, float]] = {}
    path = Path(path)
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                point = json.loads(line)
                points[int(point["step"])] = point
    return [points[s] for s in sorted(points)]


def eval_dataset_of_run(model_dir: str | os.PathLike) -> tf.data.Dataset:
    """The held-out batches a run's final evaluation scores, from its ``run.json``.

    ``train.run`` writes ``run.json`` before training, so a ``PeriodicSyncEvaluation``
    given ``functools.partial(eval_dataset_of_run, model_dir)`` builds them when
    training begins.
    """
    run = RunDescription.read(model_dir)
    return pipeline.eval_dataset(
        run.dataset,
        run.eval_batch_size,
        task=run.build_task(),
        spec=run.clip_spec,
        split=run.eval_split,
        clips_per_video=run.eval_clips_per_video,
        seed=run.seed,
    )


def switch_step(train_steps: int) -> int:
    """Step where the curriculum variant switches, at the paper's 50/90 of training."""
    return max(1, int(round(SWITCH_FRACTION * train_steps)))


def run_variant(
    name: str,
    model_dir: str | os.PathLike,
    train_steps: int,
    eval_every: int,
    bindings: Sequence[str] = (),
    repo_root: str | os.PathLike = ".",
    verbose: int | str = 0,
) -> dict[str, Any]:
    """Trains one ablation variant from its recipe and returns its results.

    Args:
        name: A key of ``VARIANTS``.
        model_dir: Output folder of the run (``train.run``'s, plus ``history.jsonl`` and
            ``results.json``).
        train_steps: Optimizer steps.
        eval_every: Steps between evaluations on the held-out split; also the epoch
            length, so each evaluation coincides with an epoch end.
        bindings: Extra gin bindings (applied after the recipe's).
        repo_root: Folder the recipe paths (and their ``include``) are relative to.
        verbose: Keras ``fit`` verbosity.

    Returns:
        ``{"variant", "train_steps", "switch_step", "final": {...}, "history": [...]}``.
    """
    if name not in VARIANTS:
        raise ValueError(f"Unknown ablation variant {name!r}; known: {', '.join(VARIANTS)}.")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    recipe_bindings = [
        f"train.Trainer.train_steps = {train_steps}",
        f"train.Trainer.steps_per_epoch = {eval_every}",
        f"train.Runtime.verbose = {verbose!r}",
        # A cosine learning-rate schedule (the quickstart's) decays over the run's budget.
        f"keras.optimizers.schedules.CosineDecay.decay_steps = {train_steps}",
    ]
    if name == "curriculum":
        recipe_bindings.append(f"curricula.step_switch.boundaries = [{switch_step(train_steps)}]")
    gin.clear_config()
    # Recipes and their ``include 'gin/quickstart.gin'`` are relative to the repository root.
    root = os.path.abspath(repo_root)
    if root not in _SEARCH_PATHS:
        gin.add_config_file_search_path(root)
        _SEARCH_PATHS.add(root)
    config.parse_gin([VARIANTS[name]], [*recipe_bindings, *bindings])
    history_path = model_dir / "history.jsonl"
    callback = PeriodicSyncEvaluation(
        functools.partial(eval_dataset_of_run, model_dir), eval_every, history_path=history_path
    )
    final = train.run(model_dir=model_dir, callbacks=[callback])
    result = {
        "variant": name,
        "train_steps": train_steps,
        "switch_step": switch_step(train_steps) if name == "curriculum" else None,
        "final": final,
        "history": read_history(history_path),
    }
    (model_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    gin.clear_config()
    return result


def run_all(
    output_dir: str | os.PathLike,
    variants: Sequence[str] = tuple(VARIANTS),
    train_steps: int = 500,
    eval_every: int = 50,
    bindings: Sequence[str] = (),
    fresh: bool = False,
) -> dict[str, dict[str, Any]]:
    """Trains each variant into ``<output_dir>/<variant>`` (or reuses its finished run).

    Prints one progress line per variant.

    Args:
        output_dir: Folder of the runs.
        variants: Keys of ``VARIANTS``.
        train_steps: Optimizer steps of every run (equal budgets).
        eval_every: Steps between evaluations on the held-out videos.
        bindings: Extra gin bindings of every run.
        fresh: Delete earlier runs first.

    Returns:
        Variant -> :func:`run_variant`'s results.

    Raises:
        UserError: A finished run of another step budget is in the way.
    """
    output_dir = Path(output_dir)
    results = {}
    for name in variants:
        model_dir = output_dir / name
        if fresh and model_dir.exists():
            shutil.rmtree(model_dir)
        done = model_dir / "results.json"
        if done.is_file():
            previous = json.loads(done.read_text(encoding="utf-8"))
            if previous["train_steps"] == train_steps:
                print(f"[{name}] reusing {done}", flush=True)
                results[name] = previous
                continue
            raise UserError(
                f"{model_dir} holds a {previous['train_steps']}-step run; use --fresh or "
                f"another --output_dir for {train_steps} steps"
            )
        start = time.time()
        results[name] = run_variant(name, model_dir, train_steps, eval_every, bindings)
        final = results[name]["final"]
        print(
            f"[{name}] {train_steps} steps in {time.time() - start:.0f} s: "
            f"easy pairs {final.get('sync_accuracy', float('nan')):.3f}, "
            f"hard pairs {final.get('sync_accuracy_hard', float('nan')):.3f}",
            flush=True,
        )
    return results


def _accuracy(metrics: Mapping[str, float], pairs: str) -> float:
    key = "sync_accuracy" if pairs == "easy" else f"sync_accuracy_{pairs}"
    return float(metrics.get(key, math.nan))


def format_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One Markdown table: final sync accuracy of each run on easy and on hard test pairs."""
    lines = [
        "| training negatives | steps | sync acc., easy-negative pairs "
        "| sync acc., hard-negative pairs |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, result in results.items():
        final = result["final"]
        lines.append(
            f"| {LABELS.get(name, name)} | {result['train_steps']} "
            f"| {_accuracy(final, 'easy'):.3f} | {_accuracy(final, 'hard'):.3f} |"
        )
    return "\n".join(lines)


def check_ordering(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The paper's ordering, in kind; returns the violated statements (empty: it holds)."""
    needed = {"easy", "hard", "curriculum"}
    if not needed <= set(results):
        return [f"ordering not checked: needs the runs {sorted(needed)}"]
    acc = {n: results[n]["final"] for n in needed}
    failures = []
    if not _accuracy(acc["curriculum"], "hard") >= _accuracy(acc["easy"], "hard"):
        failures.append("curriculum < easy-only on hard-negative pairs")
    if not _accuracy(acc["curriculum"], "easy") > _accuracy(acc["hard"], "easy"):
        failures.append("curriculum <= hard-only on easy-negative pairs")
    return failures


def plot_history(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Writes a PNG of held-out sync accuracy against step, easy and hard pairs side by side.

    Raises:
        ImportError: If matplotlib is missing (``pip install -e ".[bench]"``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            'The ablation plot needs matplotlib: pip install -e ".[bench]" '
            "(or pip install matplotlib)."
        ) from error
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, pairs in zip(axes, ("easy", "hard"), strict=True):
        for name, result in results.items():
            steps = [p["step"] for p in result["history"]]
            values = [_accuracy(p, pairs) for p in result["history"]]
            ax.plot(steps, values, marker="o", markersize=3, label=LABELS.get(name, name))
            if result.get("switch_step"):
                ax.axvline(result["switch_step"], color="grey", linestyle=":", linewidth=1)
        ax.axhline(0.5, color="black", linewidth=0.5)
        ax.set_title(f"held-out pairs with {pairs} negatives")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("balanced sync accuracy")
    axes[0].set_ylim(0.3, 1.02)
    axes[1].legend(loc="lower right")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
