"""Evaluation protocols and the linear SVM probe, on hand-made features."""

import numpy as np
import pytest

from avts_tf.errors import UserError
from avts_tf.evaluation import audio_probe
from avts_tf.evaluation.features import Features


def make_features(ids, labels, splits, windows_per_file=2, separable=True, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    file_index = np.repeat(np.arange(len(ids)), windows_per_file)
    centers = rng.normal(size=(labels.max() + 1, 6)) * (5.0 if separable else 0.0)
    feats = centers[labels[file_index]] + rng.normal(size=(len(file_index), 6))
    return Features(
        features=feats.astype(np.float32),
        file_index=file_index,
        ids=np.asarray(ids),
        labels=labels,
        splits=np.asarray(splits),
        label_names=[],
    )


def test_esc50_protocol_holds_out_each_fold_once():
    n = 20
    feats = make_features(
        [f"a{i}.wav" for i in range(n)], np.arange(n) % 4, [f"fold{i % 5 + 1}" for i in range(n)]
    )
    folds = audio_probe.make_folds(feats, "auto")
    assert [f.name for f in folds] == ["fold1", "fold2", "fold3", "fold4", "fold5"]
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == list(range(n))
    for fold in folds:
        assert not set(fold.train) & set(fold.test)
        assert set(feats.splits[fold.test]) == {fold.name}


def test_split_protocol_and_unlabelled_files():
    feats = make_features(
        ["a", "b", "c", "d", "e"], [0, 1, -1, 0, 1], ["train", "train", "train", "test", "test"]
    )
    (fold,) = audio_probe.make_folds(feats, "auto")
    assert fold.train.tolist() == [0, 1] and fold.test.tolist() == [3, 4]
    with pytest.raises(UserError, match="splits present: test, train"):
        audio_probe.make_folds(feats, "split", test_split="val")


def test_kfold_is_stratified_and_checks_class_sizes():
    feats = make_features([str(i) for i in range(12)], np.arange(12) % 3, ["all"] * 12)
    folds = audio_probe.make_folds(feats, "auto", num_folds=4)
    assert len(folds) == 4
    for fold in folds:
        assert sorted(feats.labels[fold.test].tolist()) == [0, 1, 2]
    with pytest.raises(UserError, match="at least 5 files per class"):
        audio_probe.make_folds(feats, "kfold", num_folds=5)


def test_fsdd_speakers_holds_out_one_speaker_per_fold():
    ids = [
        f"{d}_{s}_{i}.wav"
        for s in ("george", "jackson", "theo")
        for d in range(2)
        for i in range(2)
    ]
    feats = make_features(ids, [int(x[0]) for x in ids], ["train"] * len(ids))
    folds = audio_probe.make_folds(feats, "fsdd_speakers")
    assert [f.name for f in folds] == ["held out george", "held out jackson", "held out theo"]
    for fold in folds:
        speaker = fold.name.split()[-1]
        assert all(speaker in feats.ids[i] for i in fold.test)
        assert not any(speaker in feats.ids[i] for i in fold.train)
    assert len(audio_probe.make_folds(feats, "group", group_regex=r"_(\w+?)_", num_folds=2)) == 2


def test_bad_protocol_inputs():
    feats = make_features(["a", "b"], [0, 1], ["train", "train"])
    with pytest.raises(UserError, match="unknown protocol 'nope'"):
        audio_probe.make_folds(feats, "nope")
    with pytest.raises(UserError, match="needs --group_regex"):
        audio_probe.make_folds(feats, "group")
    with pytest.raises(UserError, match="does not match id"):
        audio_probe.make_folds(feats, "group", group_regex=r"^z(\d)")
    empty = make_features(["a"], [0], ["train"])
    empty.labels[:] = -1
    with pytest.raises(UserError, match="empty set"):
        audio_probe.make_folds(empty, "auto")


def test_file_scores_average_windows_and_handle_binary_scores():
    scores = np.array([1.0, 3.0, -2.0])
    per_file = audio_probe.file_scores(scores, np.array([7, 7, 9]), np.array([9, 7]))
    np.testing.assert_allclose(per_file, [[2.0, -2.0], [-2.0, 2.0]])


@pytest.mark.parametrize("num_classes", [2, 4])
def test_probe_separates_separable_classes(num_classes):
    n = 40
    feats = make_features(
        [str(i) for i in range(n)],
        np.arange(n) % num_classes,
        ["train" if i < 28 else "test" for i in range(n)],
        windows_per_file=3,
    )
    result = audio_probe.probe(feats, audio_probe.make_folds(feats, "split"), [0.1, 1.0])
    assert result["mean"] == 1.0 and result["std"] == 0.0
    fold = result["folds"][0]
    assert fold["test_files"] == 12 and fold["C"] in (0.1, 1.0)


def test_probe_is_at_chance_on_noise():
    n = 200
    feats = make_features(
        [str(i) for i in range(n)],
        np.arange(n) % 2,
        ["train" if i < 100 else "test" for i in range(n)],
        separable=False,
    )
    result = audio_probe.probe(feats, audio_probe.make_folds(feats, "split"))
    assert 0.3 < result["mean"] < 0.7
