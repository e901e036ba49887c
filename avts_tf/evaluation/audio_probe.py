"""Evaluation protocols (folds of files) and the linear SVM probe on frozen features.

The probe is scikit-learn's ``LinearSVC`` after ``StandardScaler``, trained on every
window of the training files (each window carries its file's label). A test file's
class is the argmax of its windows' decision scores, averaged.

Protocols (``make_folds``):

* ``esc50``: splits ``fold1`` .. ``fold5`` (as written by the ``esc50`` layout), each
  held out once.
* ``dcase2014`` / ``split``: train on ``train_split``, test on ``test_split``.
* ``kfold``: stratified k-fold over every labelled file.
* ``group``: files grouped by the first capture group of ``group_regex`` on their id;
  each group held out once (or ``num_folds`` group folds).
* ``fsdd_speakers``: ``group`` with the speaker of FSDD's ``{digit}_{speaker}_{index}.wav``.
* ``auto``: ``esc50`` when ``fold<k>`` splits exist, else ``split`` when ``train`` and
  ``test`` exist, else ``kfold``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    LeaveOneGroupOut,
    StratifiedKFold,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from avts_tf.errors import UserError
from avts_tf.evaluation import checkpoint, features, mfcc, prepared
from avts_tf.evaluation.features import Features
from avts_tf.evaluation.prepared import DataSource

PROTOCOLS = ("auto", "esc50", "dcase2014", "split", "kfold", "group", "fsdd_speakers")
FSDD_SPEAKER_REGEX = r"(?:^|/)\d+_([^_/]+)_\d+\.\w+$"
_FOLD_SPLIT = re.compile(r"^fold(\d+)$")


@dataclasses.dataclass(frozen=True)
class Fold:
    """One train/test partition of file indices."""

    name: str
    train: np.ndarray
    test: np.ndarray


def _split_folds(feats: Features, labelled: np.ndarray, train: str, test: str) -> list[Fold]:
    tr = labelled[feats.splits[labelled] == train]
    te = labelled[feats.splits[labelled] == test]
    if len(tr) == 0 or len(te) == 0:
        present = ", ".join(sorted(set(feats.splits.tolist())))
        raise UserError(
            f"need labelled files in splits {train!r} and {test!r}; splits present: {present}"
        )
    return [Fold(f"{train}->{test}", tr, te)]


def _group_folds(
    feats: Features, labelled: np.ndarray, regex: str, num_folds: int | None
) -> list[Fold]:
    pattern = re.compile(regex)
    groups = []
    for i in labelled:
        match = pattern.search(str(feats.ids[i]))
        if not match:
            raise UserError(f"group_regex {regex!r} does not match id {feats.ids[i]!r}")
        groups.append(match.group(1) if pattern.groups else match.group(0))
    groups = np.asarray(groups)
    names = sorted(set(groups.tolist()))
    if len(names) < 2:
        raise UserError(f"group_regex {regex!r} finds {len(names)} group(s); need at least 2")
    if num_folds and num_folds < len(names):
        splitter = GroupKFold(n_splits=num_folds)
    else:
        splitter = LeaveOneGroupOut()
    folds = []
    for tr, te in splitter.split(labelled, groups=groups):
        held = ",".join(sorted(set(groups[te].tolist())))
        folds.append(Fold(f"held out {held}", labelled[tr], labelled[te]))
    return folds


def make_folds(
    feats: Features,
    protocol: str = "auto",
    *,
    train_split: str = "train",
    test_split: str = "test",
    num_folds: int | None = None,
    group_regex: str | None = None,
    seed: int = 0,
) -> list[Fold]:
    """Train/test partitions of the labelled files of ``feats`` (see module docstring).

    Raises:
        UserError: If the protocol is unknown or the data cannot support it.
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    labelled = np.flatnonzero(feats.labels >= 0)
    if len(labelled) == 0:
        raise UserError(
            "no labelled file to evaluate (empty set); give files in class folders "
            "or a CSV with labels"
        )
    splits = set(feats.splits[labelled].tolist())
    fold_splits = sorted((s for s in splits if _FOLD_SPLIT.match(s)), key=lambda s: int(s[4:]))
    if protocol == "auto":
        if len(fold_splits) >= 2:
            protocol = "esc50"
        elif {train_split, test_split} <= splits:
            protocol = "split"
        else:
            protocol = "kfold"
    if protocol == "esc50":
        if len(fold_splits) < 2:
            raise UserError(
                f"protocol esc50 needs splits fold1..fold5; found {', '.join(sorted(splits))}"
            )
        return [
            Fold(s, labelled[feats.splits[labelled] != s], labelled[feats.splits[labelled] == s])
            for s in fold_splits
        ]
    if protocol in ("dcase2014", "split"):
        return _split_folds(feats, labelled, train_split, test_split)
    if protocol == "fsdd_speakers":
        return _group_folds(feats, labelled, FSDD_SPEAKER_REGEX, num_folds)
    if protocol == "group":
        if not group_regex:
            raise UserError("protocol group needs --group_regex (e.g. '^([a-z]+)_')")
        return _group_folds(feats, labelled, group_regex, num_folds)
    k = num_folds or 5
    counts = np.bincount(feats.labels[labelled])
    if counts[counts > 0].min() < k:
        raise UserError(
            f"kfold with {k} folds needs at least {k} files per class; lower "
            "--num_folds or give more files"
        )
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        Fold(f"fold {i + 1}/{k}", labelled[tr], labelled[te])
        for i, (tr, te) in enumerate(splitter.split(labelled, feats.labels[labelled]))
    ]


def linear_svm(C: float = 1.0) -> Pipeline:  # noqa: N803 - scikit-learn's name.
    """Standardisation followed by a linear SVM."""
    return make_pipeline(StandardScaler(), LinearSVC(C=C, max_iter=20000))


def _windows_of(feats: Features, files: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isin(feats.file_index, files))


def file_scores(scores: np.ndarray, file_index: np.ndarray, files: np.ndarray) -> np.ndarray:
    """Mean decision score per file: ``[len(files), classes]``."""
    if scores.ndim == 1:  # Binary LinearSVC: one score for the second class.
        scores = np.stack([-scores, scores], axis=1)
    position = {int(f): i for i, f in enumerate(files)}
    rows = np.asarray([position[int(f)] for f in file_index])
    total = np.zeros((len(files), scores.shape[1]))
    np.add.at(total, rows, scores)
    return total / np.bincount(rows, minlength=len(files))[:, None]


def probe_fold(
    feats: Features,
    fold: Fold,
    Cs: Sequence[float] = (1.0,),  # noqa: N803
) -> dict[str, float]:
    """Trains the probe on ``fold.train`` files and scores ``fold.test`` files.

    With several ``Cs`` the value is chosen by 3-fold cross-validation over training
    files (windows of one file stay together).

    Returns:
        ``accuracy`` (per file), ``window_accuracy``, ``C``, file counts.
    """
    train, test = _windows_of(feats, fold.train), _windows_of(feats, fold.test)
    x_train, y_train = feats.features[train], feats.window_labels[train]
    if len(np.unique(y_train)) < 2:
        raise UserError(
            f"{fold.name}: the training files hold fewer than 2 classes; give files "
            "of at least two classes in each fold"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(Cs) > 1:
            search = GridSearchCV(
                linear_svm(), {"linearsvc__C": list(Cs)}, cv=GroupKFold(n_splits=3)
            )
            search.fit(x_train, y_train, groups=feats.file_index[train])
            model, C = search.best_estimator_, float(search.best_params_["linearsvc__C"])
        else:
            C = float(Cs[0])
            model = linear_svm(C).fit(x_train, y_train)
    scores = model.decision_function(feats.features[test])
    classes = model.classes_
    per_file = file_scores(scores, feats.file_index[test], fold.test)
    predicted = classes[np.argmax(per_file, axis=1)]
    window_predicted = model.predict(feats.features[test])
    return {
        "accuracy": float(np.mean(predicted == feats.labels[fold.test])),
        "window_accuracy": float(np.mean(window_predicted == feats.window_labels[test])),
        "C": C,
        "train_files": int(len(fold.train)),
        "test_files": int(len(fold.test)),
    }


def probe(
    feats: Features,
    folds: Sequence[Fold],
    Cs: Sequence[float] = (1.0,),  # noqa: N803
) -> dict:
    """Runs ``probe_fold`` on every fold.

    Returns:
        ``{"mean", "std", "folds": [{"name", "accuracy", ...}]}`` (accuracy per file).
    """
    results = [{"name": f.name, **probe_fold(feats, f, Cs)} for f in folds]
    accuracies = np.asarray([r["accuracy"] for r in results])
    return {"mean": float(accuracies.mean()), "std": float(accuracies.std()), "folds": results}


# -- feature sets of a command (avts-eval-audio) --------------------------------------


@dataclasses.dataclass(frozen=True)
class FeatureRequest:
    """The feature sets to probe.

    Attributes:
        feature_files: ``.npz`` files from ``avts-extract``.
        checkpoint: An audio tower: a ``.keras`` file or a run's model_dir (None: none).
        mfcc: Add the MFCC baseline.
        source: The data the tower and the baseline read (None: none given).
        layer: The tower's layer.
        pool: ``avg`` or ``max`` over time and frequency.
        window_s: Window when no tower fixes it.
        max_windows: At most this many windows per file.
        batch_size: Windows per forward pass.
        progress: Show progress bars.
    """

    feature_files: Sequence[str] = ()
    checkpoint: str | None = None
    mfcc: bool = False
    source: DataSource | None = None
    layer: str = "auto"
    pool: str = "avg"
    window_s: float = 1.0
    max_windows: int | None = None
    batch_size: int = 64
    progress: bool = True


def feature_sets(
    asked: FeatureRequest, stack: contextlib.ExitStack
) -> Iterator[tuple[str, Features]]:
    """Yields ``(name, Features)`` for every feature set asked for, in order.

    Raises:
        UserError: A features file that does not exist, or a tower or baseline without
            data.
    """
    for path in asked.feature_files:
        if not Path(path).is_file():
            raise UserError(
                f"features file {path} does not exist; give an .npz written by avts-extract"
            )
        feats = Features.load(path)
        yield f"{Path(path).name} ({feats.info.get('layer', '?')})", feats
    if not (asked.checkpoint or asked.mfcc):
        return
    if asked.source is None or not asked.source.data:
        raise UserError("give --data with --checkpoint or --baseline")
    window = None
    sample_rate = 16000
    if asked.checkpoint:
        tower = checkpoint.load_tower(asked.checkpoint, "audio")
        features.resolve_layer(tower, asked.layer)
        spec = checkpoint.clip_spec_for(asked.checkpoint, audio_tower=tower)
        sample_rate = spec.log_mel.sample_rate
    data = prepared.prepared_data(asked.source, stack, sample_rate=sample_rate, audio_only=True)
    if asked.checkpoint:
        feats = features.tower_features(
            tower,
            "audio",
            data,
            spec,
            layer=asked.layer,
            pool=asked.pool,
            batch_size=asked.batch_size,
            window_s=asked.window_s,
            max_windows=asked.max_windows,
            progress=asked.progress,
        )
        window = int(feats.info["window_samples"])
        yield f"audio tower ({feats.info['layer']})", feats
    if asked.mfcc:
        feats = mfcc.mfcc_features(
            data,
            window,
            window_s=asked.window_s,
            max_windows=asked.max_windows,
            progress=asked.progress,
        )
        yield f"MFCC baseline ({feats.features.shape[1]}-d)", feats


def evaluate(
    asked: FeatureRequest,
    protocol: str = "auto",
    cs: Sequence[float] = (1.0,),
    train_split: str = "train",
    test_split: str = "test",
    num_folds: int | None = None,
    group_regex: str | None = None,
    seed: int = 0,
) -> dict[str, dict]:
    """The linear probe of every feature set asked for over the protocol's folds.

    Returns:
        Feature set name -> :func:`probe`'s result with ``protocol``, ``info``, ``files``
        and ``windows``.
    """
    results = {}
    with contextlib.ExitStack() as stack:  # holds raw media's prepared copy
        for name, feats in feature_sets(asked, stack):
            folds = make_folds(
                feats,
                protocol,
                train_split=train_split,
                test_split=test_split,
                num_folds=num_folds,
                group_regex=group_regex,
                seed=seed,
            )
            result = probe(feats, folds, cs)
            result.update(
                protocol=protocol,
                info=feats.info,
                files=len(feats.ids),
                windows=int(len(feats.features)),
            )
            results[name] = result
    return results
