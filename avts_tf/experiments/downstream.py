"""The downstream comparison of pretraining methods (``avts-downstream``).

Each compared method has a run, trained first with its recipe where its towers are
missing (this is why it sits above ``train``); then every run, the same towers freshly
initialised and MFCC are scored on a labelled set: linear probes, few-shot fine-tuning
and optionally a speaker-held-out probe on FSDD (``avts_tf.evaluation.downstream``).
What loads TensorFlow is imported inside the functions: ``avts-downstream`` checks its
flags against :data:`METHODS` first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gin

from avts_tf import config
from avts_tf.errors import UserError
from avts_tf.evaluation import report

METHODS = {
    "avts": ("AVTS pretrained", "quickstart"),
    "tssl": ("TSSL pretrained", "tssl_quickstart"),
    "avts_tssl": ("AVTS+TSSL pretrained", "avts_tssl_quickstart"),
}
"""Method -> (column name, pretraining recipe)."""


def runs_of(
    model_dir: str | Path,
    methods: Sequence[str] | None = None,
    gin_files: Sequence[str] | None = None,
) -> dict[str, tuple[Path, list[str]]]:
    """Column name -> (model_dir, pretraining recipe files) of every compared run.

    Without ``methods``, ``model_dir`` is one AVTS run (``gin_files``, default the
    ``quickstart`` recipe); with them, each method's run is ``<model_dir>/<method>``.
    """
    root = Path(model_dir)
    if not methods:
        files = list(gin_files or [METHODS["avts"][1]])
        return {METHODS["avts"][0]: (root, files)}
    return {METHODS[m][0]: (root / m, [METHODS[m][1]]) for m in methods}


def pretrain(name: str, model_dir: Path, files: list[str], params: Sequence[str]) -> None:
    """Trains a run into ``model_dir`` with its recipe unless its towers exist."""
    # Loads TensorFlow: imported here, after the command has checked its flags.
    from avts_tf import train

    if all((model_dir / f"{w}_tower.keras").is_file() for w in ("video", "audio")):
        print(f"{name}: using the run in {model_dir}")
        return
    print(f"{name}: pretraining with {', '.join(files)} into {model_dir}")
    config.parse_gin(files, list(params))
    try:
        results = train.run(model_dir=model_dir, runtime=train.Runtime(verbose=2))
    finally:
        gin.clear_config()
    print(f"{name}: held-out {results.headline} {results[results.headline]:.3f}")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found.

    Attributes:
        results: Everything, as ``--output_json`` writes it: ``budget``, ``data``,
            ``runs``, ``audio_probe``, ``video_probe``, optionally
            ``fsdd_speaker_probe``, and one ``finetune_<towers>_head<steps>`` per
            fine-tuning.
        columns: MFCC, random init, then each run's column.
        train_files: Files in the training split of the labelled set.
        finetunes: ``(results key, fused with audio, head steps)`` of each fine-tuning.
    """

    results: dict[str, Any]
    columns: list[str]
    train_files: int
    finetunes: list[tuple[str, bool, int]]


def compare(
    model_dir: str | Path,
    budget: Any,
    methods: Sequence[str] | None = None,
    gin_files: Sequence[str] | None = None,
    gin_params: Sequence[str] = (),
    data: str | None = None,
    fsdd: str | None = None,
    fsdd_prepared: str | None = None,
    head_steps: Sequence[int] = (0,),
    fusion: bool = False,
    skip_finetune: bool = False,
) -> Comparison:
    """Pretrains the compared runs where missing, then scores them against the baselines.

    Args:
        model_dir: The run, or with ``methods`` the folder of one run per method.
        budget: Shots, draws and fine-tuning budget (``evaluation.downstream.Budget``).
        methods: Keys of :data:`METHODS` compared (None: one run, ``gin_files``).
        gin_files: Recipe of the single run (default ``quickstart``).
        gin_params: Extra gin bindings of every pretraining.
        data: Labelled prepared dataset (None: the first run's dataset).
        fsdd: FSDD recordings (or their prepared set): adds the speaker-held-out probe.
        fsdd_prepared: Where FSDD is prepared (None: a temporary folder).
        head_steps: Classifier-only steps before fine-tuning, one fine-tuning each.
        fusion: Add audio+video fine-tuning (after the last ``head_steps``).
        skip_finetune: Linear probes only.

    Raises:
        UserError: ``data`` is not a prepared dataset.
    """
    # Loads TensorFlow: imported here, after the command has checked its flags.
    from avts_tf.evaluation import checkpoint, downstream, records_io

    if data and not records_io.is_prepared(data):
        raise UserError(f"--data {data} is not a prepared dataset; prepare it with avts-prepare")
    runs = runs_of(model_dir, methods, gin_files)
    for name, (run_dir, files) in runs.items():
        pretrain(name, run_dir, files, gin_params)
    model_dirs = {name: run_dir for name, (run_dir, _) in runs.items()}
    datasets = {checkpoint.run_dataset(run_dir) for run_dir in model_dirs.values()}
    if len(datasets) > 1:
        print(f"note: the runs were pretrained on different datasets: {sorted(datasets)}")
    data = data or checkpoint.run_dataset(next(iter(model_dirs.values())))
    columns = [downstream.MFCC, downstream.SCRATCH, *model_dirs]
    results = {
        "budget": budget.__dict__,
        "data": str(data),
        "runs": {name: str(path) for name, path in model_dirs.items()},
    }
    feature_sets = downstream.audio_feature_sets(model_dirs, data)
    results["audio_probe"] = downstream.probe_results(feature_sets, budget)
    video_sets = downstream.video_feature_sets(model_dirs, data, budget.clips_per_video)
    results["video_probe"] = downstream.probe_results(video_sets, budget)
    train_files = int(sum(feature_sets[downstream.MFCC].splits == budget.train_split))
    if fsdd:
        with contextlib.ExitStack() as stack:
            prepared = _prepared_fsdd(fsdd, fsdd_prepared, stack, model_dirs)
            speaker_sets = downstream.audio_feature_sets(model_dirs, prepared)
            results["fsdd_speaker_probe"] = downstream.speaker_probe_results(speaker_sets, budget.C)
    finetunes = [] if skip_finetune else [(False, h) for h in head_steps]
    if fusion and not skip_finetune:
        finetunes.append((True, head_steps[-1]))
    done = []
    for fused, head in finetunes:
        key = f"finetune_{'audio_video' if fused else 'video'}_head{head}"
        results[key] = downstream.finetune_results(model_dirs, data, budget, fused, head)
        done.append((key, fused, head))
    return Comparison(results, columns, train_files, done)


def _prepared_fsdd(
    fsdd: str, work: str | None, stack: contextlib.ExitStack, model_dirs: dict[str, Path]
) -> Path:
    """FSDD prepared at the towers' sample rate (``fsdd`` may already be prepared)."""
    # Loads TensorFlow: imported here, after the command has checked its flags.
    from avts_tf.evaluation import checkpoint, records_io

    rate = checkpoint.run_clip_spec(next(iter(model_dirs.values()))).log_mel.sample_rate
    work = work or stack.enter_context(tempfile.TemporaryDirectory(prefix="avts_fsdd_"))
    return records_io.ensure_prepared(fsdd, work, layout="fsdd", sample_rate=rate, audio_only=True)


def table(found: Comparison) -> str:
    """Accuracy (mean ± std over draws or folds) per row of the comparison and column."""
    # Loads TensorFlow: imported here, after the command has checked its flags.
    from avts_tf.evaluation import downstream

    results, columns, budget = found.results, found.columns, found.results["budget"]
    shots, repeats = budget["shots"], budget["repeats"]
    rows = []
    for task in ("audio", "video"):
        probe = results[f"{task}_probe"]
        rows += [
            [f"{task} linear probe, {shots} per class ({repeats} draws)"]
            + [_cell(probe["few_shot"], c) for c in columns],
            [f"{task} linear probe, all {found.train_files} training files"]
            + [_cell(probe["all"], c) for c in columns],
        ]
    if "fsdd_speaker_probe" in results:
        speakers = len(results["fsdd_speaker_probe"][downstream.MFCC]["runs"])
        rows.append(
            [f"FSDD audio linear probe, {speakers} held-out speakers"]
            + [_cell(results["fsdd_speaker_probe"], c) for c in columns]
        )
    for key, fused, head in found.finetunes:
        towers = "audio+video" if fused else "video"
        steps = (
            f"{head} head + {budget['finetune_steps']} steps"
            if head
            else (f"{budget['finetune_steps']} steps")
        )
        rows.append(
            [f"{towers} fine-tuning, {shots} per class, {steps}"]
            + [_cell(results[key], c) for c in columns]
        )
    return report.table(["accuracy % (mean ± std)", *columns], rows)


def _cell(results: dict, column: str) -> str:
    if column not in results:
        return "-"
    entry = results[column]
    return report.mean_std(entry["mean"], entry["std"] if len(entry["runs"]) > 1 else None)
