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

:func:`evaluate_run` runs both with a run's frozen towers (``avts-eval-retrieval``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from absl import logging

from avts_tf.data import manifest
from avts_tf.data.ingestion import sources
from avts_tf.errors import UserError
from avts_tf.evaluation import checkpoint, features, plots, prepared, report, shared_space
from avts_tf.evaluation.features import Features
from avts_tf.evaluation.prepared import DataSource

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


def class_recall(
    query_feats: np.ndarray,
    query_labels: np.ndarray,
    db_feats: np.ndarray,
    db_labels: np.ndarray,
    ks: Sequence[int] = KS,
) -> dict[str, float]:
    """``R@k``: the share of queries with a same-class item among their ``k`` nearest."""
    order = ranked(query_feats, db_feats)
    hits = db_labels[order] == query_labels[:, None]
    return {f"R@{k}": float(np.mean(hits[:, :k].any(axis=1))) for k in ks}


def instance_recall(
    queries: np.ndarray, database: np.ndarray, ks: Sequence[int] = KS
) -> dict[str, float]:
    """``R@k`` when query ``i``'s only match is database item ``i``."""
    order = ranked(queries, database)
    rank = np.argmax(order == np.arange(len(queries))[:, None], axis=1)
    return {f"R@{k}": float(np.mean(rank < k)) for k in ks}


def video_retrieval(
    feats: Features, train_split: str, test_split: str, ks: Sequence[int] = KS
) -> dict[str, float]:
    """Test videos query training videos by class (see the module docstring).

    Raises:
        UserError: A split without videos, or videos without labels.
    """
    files = per_file(feats)
    test = np.flatnonzero(feats.splits == test_split)
    train = np.flatnonzero(feats.splits == train_split)
    for name, rows in ((test_split, test), (train_split, train)):
        if not len(rows):
            raise UserError(
                f"no videos in split {name!r}; splits present: "
                f"{', '.join(sorted(set(feats.splits)))}"
            )
    if (feats.labels[np.concatenate([test, train])] < 0).any():
        raise UserError(
            "retrieval by class needs labelled videos; prepare the dataset from "
            "class folders or a CSV with labels"
        )
    return class_recall(files[test], feats.labels[test], files[train], feats.labels[train], ks)


def cross_modal_retrieval(
    video: Features, audio: Features, split: str, ks: Sequence[int] = KS
) -> dict[str, float]:
    """Video -> audio and audio -> video retrieval of the same video within ``split``."""
    common = sorted(set(video.ids[video.splits == split]) & set(audio.ids[audio.splits == split]))
    if len(common) < 2:
        raise UserError(
            f"cross-modal retrieval needs two videos with both modalities in split "
            f"{split!r}, found {len(common)}; give a split with two or more"
        )
    v_index = {rid: i for i, rid in enumerate(video.ids)}
    a_index = {rid: i for i, rid in enumerate(audio.ids)}
    v = per_file(video)[[v_index[r] for r in common]]
    a = per_file(audio)[[a_index[r] for r in common]]
    results = {f"v2a_{k}": value for k, value in instance_recall(v, a, ks).items()}
    results.update({f"a2v_{k}": value for k, value in instance_recall(a, v, ks).items()})
    return results


# -- a run's towers on a dataset (avts-eval-retrieval) ---------------------------------


@dataclasses.dataclass(frozen=True)
class RunRetrieval:
    """Retrieval of a run's towers (and, if asked, the same towers freshly initialised).

    Attributes:
        results: Towers (``"pretrained"``, ``"random init"``) -> ``video_to_video``
            (class recall, or None without labels), ``cross_modal`` (or None without two
            videos with sound) and ``cross_modal_space`` (the space's name, or None).
        space: The space the run compares audio with video in.
        with_sound: Videos with sound in the query split.
    """

    results: dict[str, dict[str, Any]]
    space: str
    with_sound: int


def evaluate_run(
    checkpoint_path: str,
    source: DataSource | None,
    stack: contextlib.ExitStack,
    train_split: str = "train",
    test_split: str = "test",
    num_clips: int = 10,
    batch_size: int = 32,
    random_init: bool = False,
) -> RunRetrieval:
    """Video -> video by class and audio <-> video retrieval with a run's frozen towers.

    Args:
        checkpoint_path: The run (its model_dir).
        source: The data (None: the run's dataset). Media of a folder gets a held-out
            split per label, as ``avts-prepare``'s, prepared into ``stack``'s lifetime.
        stack: Holds media's prepared copy.
        train_split: The retrieved (database) videos.
        test_split: The query videos.
        num_clips: Evenly spaced clips averaged per video.
        batch_size: Clips per forward pass.
        random_init: Also score the towers freshly initialised.

    Raises:
        UserError: No prepared dataset, a split without videos, or nothing to retrieve.
    """
    video = checkpoint.load_tower(checkpoint_path, "video")
    audio = checkpoint.load_tower(checkpoint_path, "audio")
    spec = checkpoint.clip_spec_for(checkpoint_path, video_tower=video, audio_tower=audio)
    if source is not None:
        data = str(
            prepared.prepared_data(
                source,
                stack,
                sample_rate=spec.log_mel.sample_rate,
                video_only=True,
                test_fraction=sources.DEFAULT_TEST_FRACTION,
            )
        )
    else:
        data = checkpoint.run_dataset(checkpoint_path)
        if not manifest.exists(data):
            raise UserError(f"{data} is not a prepared dataset; prepare it with avts-prepare")
    splits = [train_split, test_split]
    found = manifest.Manifest.read(data)
    window_s = spec.window_seconds(found.fps)
    with_sound = sum(1 for e in found.records(test_split) if e.num_samples)
    labelled = _check_splits(found, data, train_split, test_split, with_sound)
    run = checkpoint.run_dir(checkpoint_path)  # The run's heads, once the splits can be used.
    space = shared_space.of_run(run, video, audio) if run else shared_space.TOWER_OUTPUTS
    towers = {"pretrained": (video, audio, space)}
    if random_init:
        keras.utils.set_random_seed(0)
        towers["random init"] = (
            checkpoint.fresh_copy(video),
            checkpoint.fresh_copy(audio),
            space.freshly_initialised(),
        )
    if with_sound < 2:
        logging.warning(
            "cross-modal retrieval left out: it needs two videos with sound in split %r, found %d",
            test_split,
            with_sound,
        )
    results = {}
    for name, (v, a, compared_in) in towers.items():
        by_class = cross = None
        if labelled:
            pooled = features.tower_features(
                v,
                "video",
                data,
                spec,
                splits=splits,
                num_clips=num_clips,
                progress=False,
                batch_size=batch_size,
            )
            by_class = video_retrieval(pooled, train_split, test_split)
        if with_sound >= 2:
            v_out = features.tower_features(
                v,
                "video",
                data,
                spec,
                layer="output",
                splits=[test_split],
                num_clips=num_clips,
                progress=False,
                batch_size=batch_size,
                head=compared_in.video_head,
            )
            a_out = features.tower_features(
                a,
                "audio",
                data,
                spec,
                layer="output",
                splits=[test_split],
                window_s=window_s,
                progress=False,
                batch_size=batch_size,
                head=compared_in.audio_head,
            )
            cross = cross_modal_retrieval(v_out, a_out, test_split)
        results[name] = {
            "video_to_video": by_class,
            "cross_modal": cross,
            "cross_modal_space": compared_in.name if cross else None,
        }
    return RunRetrieval(results, space.name, with_sound)


def _check_splits(
    found: manifest.Manifest, data: str, train_split: str, test_split: str, with_sound: int
) -> bool:
    """Whether retrieval by class can run (every video labelled), checked before decoding.

    Without labels only audio <-> video retrieval runs (a warning says why); with neither
    labels nor two videos with sound in the query split there is nothing to measure.

    Raises:
        UserError: A split without videos, or nothing to retrieve.
    """
    roles = ((train_split, "database"), (test_split, "queries"))
    videos_of = {split: found.records(split) for split, _ in roles}
    for split, role in roles:
        if not videos_of[split]:
            raise UserError(
                f"no videos in split {split!r} ({role}) of {data} (splits with videos: "
                f"{', '.join(found.split_names) or 'none'}); name two with --train_split "
                "(database) and --test_split (queries), or prepare media with a held-out "
                "split (avts-prepare --test_fraction)"
            )
    for split, videos in videos_of.items():
        unlabelled = sum(1 for e in videos if not e.label)
        if not unlabelled:
            continue
        problem = (
            f"retrieval by class needs labelled videos: {unlabelled} of {len(videos)} "
            f"in split {split!r} of {data} have no label"
        )
        fix = "prepare the dataset from class folders or a CSV with labels"
        if with_sound < 2:
            raise UserError(
                f"{problem}, and audio <-> video retrieval needs two videos with "
                f"sound in split {test_split!r} (found {with_sound}); {fix}"
            )
        logging.warning(
            "video -> video retrieval by class left out: %s (%s); audio <-> video "
            "retrieval goes on",
            problem,
            fix,
        )
        return False
    return True


def table(results: dict[str, dict[str, Any]]) -> str:
    """One row per towers and retrieval direction: R@k, ``n/a`` where left out."""
    rows = []
    for name, found in results.items():
        by_class, cross = found["video_to_video"], found["cross_modal"]
        for kind, values, prefix in (
            ("video -> video (class)", by_class, ""),
            ("video -> audio (same video)", cross, "v2a_"),
            ("audio -> video (same video)", cross, "a2v_"),
        ):
            rows.append(
                [name, kind, *[f"{values[f'{prefix}R@{k}']:.3f}" if values else "n/a" for k in KS]]
            )
    return report.table(["towers", "retrieval", *[f"R@{k}" for k in KS]], rows)


def write_results(path: str, results: dict[str, dict[str, Any]]) -> str | None:
    """Writes ``results`` as JSON and a bar plot beside it; the plot's path (None: none)."""
    report.write_json(path, results)

    def bars(r: dict) -> dict[str, float]:
        out = {f"v->v R@{k}": r["video_to_video"][f"R@{k}"] for k in (1, 5) if r["video_to_video"]}
        for label, prefix in (("v->a", "v2a_"), ("a->v", "a2v_")):
            if r["cross_modal"]:
                out.update({f"{label} R@{k}": r["cross_modal"][f"{prefix}R@{k}"] for k in (1, 5)})
        return out

    return plots.save_next_to(
        path,
        "retrieval",
        lambda ax: plots.grouped_bars(ax, {name: bars(r) for name, r in results.items()}, "recall"),
    )


def headline(results: dict[str, dict[str, Any]]) -> str:
    """The last line: the run's video -> video R@k, or video -> audio without labels."""
    mine = results["pretrained"]
    if mine["video_to_video"]:
        return "retrieval: " + " ".join(f"R@{k}={mine['video_to_video'][f'R@{k}']:.3f}" for k in KS)
    return "retrieval (video -> audio, unlabelled videos): " + " ".join(
        f"R@{k}={mine['cross_modal'][f'v2a_R@{k}']:.3f}" for k in KS
    )
