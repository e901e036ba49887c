"""The papers' downstream comparison, in kind: pretrained vs randomly initialized towers.

Columns are MFCC (audio only), random init (the first run's towers with fresh weights) and
one per pretrained run (``runs``: column name -> model_dir; for example AVTS, temporal
contrastive and both, pretrained on the same videos). On a labelled prepared dataset (by
default the synthetic world the first run was trained on; its class labels are never
seen in pretraining):

* audio linear probe: a linear SVM on frozen audio features of each pretrained tower, of
  the same architecture with random weights, and on MFCCs, trained on ``shots`` files per
  class of the training split, scored per file on the test split; repeated over several
  few-shot draws, plus one row with every training file;
* speaker-held-out audio probe (``speaker_probe_results``): the same features on a
  spoken-digit set (FSDD), one fold per held-out speaker;
* video linear probe: the same on frozen video features (``clips_per_video`` clips);
* video fine-tuning: the video tower (optionally fused with the audio tower) fine-tuned
  from the pretrained weights or from random weights on the same few shots with a small
  step budget, video-level accuracy on the test split; optionally after first fitting
  the classifier alone on the frozen towers (``head_steps``, "LP-FT", Kumar et al. 2022),
  which keeps a short fine-tuning from overwriting pretrained features.

The synthetic classes differ in colour, shape and timbre, so with many labels any
features separate them; few labels, frozen features and a small fine-tuning budget are
what make the comparison informative.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import keras
import numpy as np

from avts_tf.errors import UserError
from avts_tf.evaluation import (
    audio_probe,
    checkpoint,
    features,
    finetune,
    mfcc,
    records_io,
)

SCRATCH, MFCC = "random init", "MFCC"
Runs = Mapping[str, str | Path]  # Column name -> model_dir of a pretrained run.


@dataclasses.dataclass(frozen=True)
class Budget:
    """Sizes of the comparison.

    Attributes:
        shots: Labelled training files per class.
        repeats: Few-shot draws (seeds ``0 .. repeats - 1``).
        finetune_steps: Fine-tuning steps per run (every layer trained).
        finetune_batch: Fine-tuning batch size.
        learning_rate: Fine-tuning Adam learning rate.
        clips_per_video: Test clips averaged per video.
        C: SVM regularization.
        train_split: Split the shots are drawn from.
        test_split: Split scored.
    """

    shots: int = 1
    repeats: int = 3
    finetune_steps: int = 40
    finetune_batch: int = 8
    learning_rate: float = 1e-3
    clips_per_video: int = 10
    C: float = 1.0  # noqa: N815 - scikit-learn's name.
    train_split: str = "train"
    test_split: str = "test"


def few_shot_fold(feats: features.Features, budget: Budget, seed: int) -> audio_probe.Fold:
    """``budget.shots`` training files per class (``choose_per_class``), every test file."""
    train = np.flatnonzero(feats.splits == budget.train_split)
    test = np.flatnonzero((feats.splits == budget.test_split) & (feats.labels >= 0))
    if len(train) == 0 or len(test) == 0:
        raise UserError(f"need files in splits {budget.train_split!r} and {budget.test_split!r}")
    chosen = train[records_io.choose_per_class(feats.labels[train], budget.shots, seed)]
    return audio_probe.Fold(f"{budget.shots}-shot seed {seed}", chosen, test)


def _summary(accuracies: list[float]) -> dict:
    values = np.asarray(accuracies)
    return {"mean": float(values.mean()), "std": float(values.std()), "runs": accuracies}


def probe_results(
    feature_sets: dict[str, features.Features], budget: Budget
) -> dict[str, dict[str, dict]]:
    """``{"few_shot"|"all": {name: {"mean", "std", "runs"}}}`` of the linear probe."""
    out: dict[str, dict[str, dict]] = {"few_shot": {}, "all": {}}
    for name, feats in feature_sets.items():
        runs = [
            audio_probe.probe_fold(feats, few_shot_fold(feats, budget, seed), [budget.C])
            for seed in range(budget.repeats)
        ]
        out["few_shot"][name] = _summary([r["accuracy"] for r in runs])
        full = audio_probe.make_folds(
            feats, "split", train_split=budget.train_split, test_split=budget.test_split
        )
        everything = audio_probe.probe_fold(feats, full[0], [budget.C])
        out["all"][name] = _summary([everything["accuracy"]])
    return out


def _first(runs: Runs) -> Path:
    if not runs:
        raise UserError("no pretrained run to compare")
    return Path(next(iter(runs.values())))


def audio_feature_sets(
    runs: Runs, data_dir: str | Path, progress: bool = False
) -> dict[str, features.Features]:
    """Frozen audio features: MFCC, the first run's tower re-initialized, each run's tower.

    Every set is cut into the same windows (the first run's audio input length).
    """
    first = checkpoint.load_tower(_first(runs), "audio")
    spec = checkpoint.clip_spec_for(_first(runs), audio_tower=first)
    keras.utils.set_random_seed(0)
    towers = {SCRATCH: checkpoint.fresh_copy(first)}
    towers.update({name: checkpoint.load_tower(path, "audio") for name, path in runs.items()})
    sets = {
        name: features.tower_features(model, "audio", data_dir, spec, progress=progress)
        for name, model in towers.items()
    }
    return {MFCC: mfcc.mfcc_features(data_dir, progress=progress), **sets}


def video_feature_sets(
    runs: Runs, data_dir: str | Path, num_clips: int = 10, progress: bool = False
) -> dict[str, features.Features]:
    """Frozen video features (``num_clips`` clips per video): random init, then each run."""
    first = checkpoint.load_tower(_first(runs), "video")
    spec = checkpoint.clip_spec_for(_first(runs), video_tower=first)
    keras.utils.set_random_seed(0)
    towers = {SCRATCH: checkpoint.fresh_copy(first)}
    towers.update({name: checkpoint.load_tower(path, "video") for name, path in runs.items()})
    return {
        name: features.tower_features(
            model, "video", data_dir, spec, num_clips=num_clips, progress=progress
        )
        for name, model in towers.items()
    }


def speaker_probe_results(
    feature_sets: dict[str, features.Features],
    C: float = 1.0,  # noqa: N803
) -> dict[str, dict]:
    """Linear probe with one fold per held-out speaker (FSDD file names), per feature set."""
    out = {}
    for name, feats in feature_sets.items():
        folds = audio_probe.make_folds(feats, "fsdd_speakers")
        result = audio_probe.probe(feats, folds, [C])
        out[name] = _summary([fold["accuracy"] for fold in result["folds"]])
    return out


def finetune_results(
    runs: Runs,
    data_dir: str | Path,
    budget: Budget,
    fusion: bool = False,
    head_steps: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, dict]:
    """Video-level accuracy of few-shot fine-tuning from pretrained and random weights.

    Args:
        runs: Pretrained runs (column name -> model_dir); random init copies the first.
        data_dir: Labelled prepared dataset.
        budget: Shots, draws, steps.
        fusion: Fine-tune the audio tower too, features concatenated.
        head_steps: Classifier-only steps on frozen towers before fine-tuning.
        log: Where per-run accuracies are reported.
    """
    first = _first(runs)
    results: dict[str, list[float]] = {SCRATCH: [], **{name: [] for name in runs}}
    num_classes = finetune.num_classes_of(data_dir, [budget.train_split, budget.test_split])
    for seed in range(budget.repeats):
        with tempfile.TemporaryDirectory(prefix="avts_few_shot_") as subset:
            train_dir = records_io.few_shot_subset(
                data_dir, subset, budget.shots, budget.train_split, seed
            )
            for name in results:
                keras.utils.set_random_seed(seed)
                model_dir = first if name == SCRATCH else runs[name]
                video = checkpoint.load_tower(model_dir, "video")
                audio = checkpoint.load_tower(model_dir, "audio") if fusion else None
                spec = checkpoint.clip_spec_for(model_dir, video, audio)
                if name == SCRATCH:
                    video = checkpoint.fresh_copy(video)
                    audio = checkpoint.fresh_copy(audio) if audio is not None else None
                model = finetune.classifier(video, num_classes, audio)
                clips = finetune.train_clips(
                    train_dir, spec, budget.finetune_batch, budget.train_split, fusion, seed
                )
                finetune.fit(
                    model,
                    clips,
                    budget.finetune_steps,
                    budget.learning_rate,
                    head_steps=head_steps,
                    verbose=0,
                )
                accuracy = finetune.video_accuracy(
                    model,
                    data_dir,
                    spec,
                    budget.test_split,
                    budget.clips_per_video,
                    fusion=fusion,
                )["accuracy"]
                results[name].append(accuracy)
                log(
                    f"fine-tuning{' (audio+video)' if fusion else ''}, head steps "
                    f"{head_steps}, {name}, seed {seed}: {100 * accuracy:.1f}%"
                )
    return {name: _summary(values) for name, values in results.items()}
