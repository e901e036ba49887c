"""Retrieval with frozen towers: video -> video by class, and audio <-> video of one video.

Video -> video follows the UCF101/HMDB51 retrieval literature (Xu et al. 2019, "Self-
supervised spatiotemporal learning via video clip order prediction", and the papers
after it): every test video queries every training video; a query is a hit at ``k``
when one of its ``k`` nearest training videos (cosine similarity) has its class. A
video's feature is the mean of its clips' features, ``num_clips`` (default 10) evenly
spaced clips, centre-cropped (``avts_tf.evaluation.features``).

Cross-modal retrieval (ours): within one split, each video's feature queries the audio
features of every video of the split (and the other way round); a hit at ``k`` when its
own video's audio is among the ``k`` nearest. An audio feature is the mean over the
file's clip-length windows. Both modalities are read in the space the run's task compares
them in (``avts_tf.evaluation.shared_space``): the towers' outputs for AVTS (its contrastive
loss compares them directly), the L2-normalised projections of the temporal task's heads
for the temporal method.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avts_tf.errors import UserError
from avts_tf.evaluation.features import Features

KS = (1, 5, 10, 20)


def per_file(feats: Features) -> np.ndarray:
    """``[num_files, dim]``: each file's windows averaged, then L2-normalised."""
    dim = feats.features.shape[1]
    sums = np.zeros((len(feats.ids), dim), np.float64)
    np.add.at(sums, feats.file_index, feats.features.astype(np.float64))
    counts = np.bincount(feats.file_index, minlength=len(feats.ids))[:, None]
    means = sums / np.maximum(counts, 1)
    return _normalised(means)


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def ranked(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """Database indices by decreasing cosine similarity, per query (ties: lower index first)."""
    similarity = _normalised(queries) @ _normalised(database).T
    return np.argsort(-similarity, axis=1, kind="stable")


def class_recall(query_feats: np.ndarray, query_labels: np.ndarray, db_feats: np.ndarray,
                 db_labels: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """``R@k``: the share of queries with a same-class item among their ``k`` nearest."""
    order = ranked(query_feats, db_feats)
    hits = db_labels[order] == query_labels[:, None]
    return {f"R@{k}": float(np.mean(hits[:, :k].any(axis=1))) for k in ks}


def instance_recall(queries: np.ndarray, database: np.ndarray,
                    ks: Sequence[int] = KS) -> dict[str, float]:
    """``R@k`` when query ``i``'s only match is database item ``i``."""
    order = ranked(queries, database)
    rank = np.argmax(order == np.arange(len(queries))[:, None], axis=1)
    return {f"R@{k}": float(np.mean(rank < k)) for k in ks}


def video_retrieval(feats: Features, train_split: str, test_split: str,
                    ks: Sequence[int] = KS) -> dict[str, float]:
    """Test videos query training videos by class (see the module docstring).

    Raises:
        UserError: A split without videos, or videos without labels.
    """
    files = per_file(feats)
    test = np.flatnonzero(feats.splits == test_split)
    train = np.flatnonzero(feats.splits == train_split)
    for name, rows in ((test_split, test), (train_split, train)):
        if not len(rows):
            raise UserError(f"no videos in split {name!r}; splits present: "
                            f"{', '.join(sorted(set(feats.splits)))}")
    if (feats.labels[np.concatenate([test, train])] < 0).any():
        raise UserError("retrieval by class needs labelled videos; prepare the dataset from "
                        "class folders or a CSV with labels")
    return class_recall(files[test], feats.labels[test], files[train], feats.labels[train], ks)


def cross_modal_retrieval(video: Features, audio: Features, split: str,
                          ks: Sequence[int] = KS) -> dict[str, float]:
    """Video -> audio and audio -> video retrieval of the same video within ``split``."""
    common = sorted(set(video.ids[video.splits == split]) & set(audio.ids[audio.splits == split]))
    if len(common) < 2:
        raise UserError(f"cross-modal retrieval needs two videos with both modalities in split "
                        f"{split!r}, found {len(common)}; give a split with two or more")
    v_index = {rid: i for i, rid in enumerate(video.ids)}
    a_index = {rid: i for i, rid in enumerate(audio.ids)}
    v = per_file(video)[[v_index[r] for r in common]]
    a = per_file(audio)[[a_index[r] for r in common]]
    results = {f"v2a_{k}": value for k, value in instance_recall(v, a, ks).items()}
    results.update({f"a2v_{k}": value for k, value in instance_recall(a, v, ks).items()})
    return results
