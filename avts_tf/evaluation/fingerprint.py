"""Robust video fingerprinting with frozen towers (the protocol is ours).

The temporal paper evaluates fingerprinting on VGG-Sound; its exact protocol is not
known to us, so this one is ours. Each query is a distorted copy of a test video
(:data:`DISTORTIONS`, all made with PyAV); the database holds the original test videos
plus distractors (the videos of another split). A file's fingerprint is its video
feature and its audio feature (each the mean over evenly spaced clips or clip-length
windows of the tower's pooled features, L2-normalised). Queries rank the database by a
score fused from the two modalities (:data:`FUSIONS`): by default the cosine similarity
of the concatenated, re-normalised features (``concat``); ``zmax`` z-normalises each
modality's similarities over the database and keeps the larger of the two (score
normalisation with the max rule of multimodal biometrics: Jain, Nandakumar & Ross,
2005), so the modality a distortion left intact can decide. Per distortion: top-1
identification accuracy (the best-scored database file is the query's
original) and mAP (one relevant file per query, so the mean of ``1 / rank``).
:func:`evaluate_run` runs it with a run's towers (``avts-eval-fingerprint``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from avts_tf import portable
from avts_tf.data import manifest
from avts_tf.data.audio_features import log_mel_spectrogram
from avts_tf.data.clips import Clips
from avts_tf.errors import UserError
from avts_tf.evaluation import checkpoint, media_edit, plots, report
from avts_tf.evaluation.features import feature_model


def _low_bitrate(clip: media_edit.Clip, rng: np.random.Generator) -> tuple[media_edit.Clip, dict]:
    return clip, {"video_bitrate": 30_000, "audio_bitrate": 16_000}


def _crop_resize(clip, rng):
    height, width = clip.frames.shape[1:3]
    crop_h, crop_w = int(height * 0.8) // 2 * 2, int(width * 0.8) // 2 * 2
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    cropped = clip.frames[:, top : top + crop_h, left : left + crop_w]
    return dataclasses.replace(clip, frames=media_edit.resize_frames(cropped, width, height)), {}


def _brightness(clip, rng):
    gain = 1.4 if rng.random() < 0.5 else 0.6
    frames = np.clip(clip.frames.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return dataclasses.replace(clip, frames=frames), {}


def _speed(factor: float):
    def change(clip, rng):
        count = int(len(clip.frames) / factor)
        frames = clip.frames[
            np.minimum((np.arange(count) * factor).round().astype(int), len(clip.frames) - 1)
        ]
        samples = int(len(clip.audio) / factor)
        audio = np.interp(
            np.arange(samples) * factor, np.arange(len(clip.audio)), clip.audio
        ).astype(np.float32)
        return dataclasses.replace(clip, frames=frames, audio=audio), {}

    return change


def _audio_noise(clip, rng):
    power = float(np.mean(clip.audio.astype(np.float64) ** 2)) or 1e-6
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (10 / 10)), len(clip.audio))  # 10 dB SNR
    return dataclasses.replace(clip, audio=(clip.audio + noise).astype(np.float32)), {}


_FASTEST = 1.1  # The speed-up distortion's factor: the shortest distorted copy.

#: Distortion name -> ``(clip, rng) -> (distorted clip, encoder settings)``.
DISTORTIONS: Mapping[str, Callable] = {
    "low_bitrate": _low_bitrate,  # H.264 at 30 kbit/s, AAC at 16 kbit/s
    "crop_resize": _crop_resize,  # a random 80% crop scaled back to the frame size
    "brightness": _brightness,  # every pixel x1.4 or x0.6
    "speed_up": _speed(_FASTEST),  # 10% faster: frames dropped, audio resampled
    "slow_down": _speed(0.9),  # 10% slower: frames repeated, audio resampled
    "audio_noise": _audio_noise,  # white noise at 10 dB SNR
}


def shortest_query_s(window_s: float, fps: float) -> float:
    """Seconds a query video needs for each distorted copy to hold one clip.

    The 10% faster copy is the shortest: ``window_s`` times 1.1, plus a frame at ``fps``.
    """
    return window_s * _FASTEST + 1.0 / fps


def distort(source: str | os.PathLike, target: str | os.PathLike, name: str, seed: int = 0) -> None:
    """Writes ``source`` distorted by :data:`DISTORTIONS` ``[name]`` to ``target``."""
    if name not in DISTORTIONS:
        raise UserError(f"unknown distortion {name!r}; valid: {', '.join(DISTORTIONS)}")
    clip = media_edit.read(source)
    clip = dataclasses.replace(clip, fps=Fraction(clip.fps))
    edited, settings = DISTORTIONS[name](clip, np.random.default_rng(seed))
    media_edit.write(target, edited, **settings)


def file_fingerprints(
    feature_fns: tuple[Callable, Callable],
    description,
    paths: Sequence[str | os.PathLike],
    num_clips: int = 10,
) -> dict[str, np.ndarray]:
    """Fingerprints of ``paths``: ``video``, ``audio`` and ``both`` (``[len(paths), dim]``).

    ``feature_fns`` are the video and audio towers' ``features.feature_model`` (built once
    by the caller: each is a traced function). ``video`` and ``audio`` are each modality's
    L2-normalised feature, ``both`` their concatenation normalised again (see the module
    docstring).
    """
    video_features, audio_features = feature_fns
    spec, fps = description.clip_spec, description.fps
    cutter = Clips(spec, fps)
    seed = tf.zeros([2], tf.int32)
    rows: dict[str, list[np.ndarray]] = {"video": [], "audio": [], "both": []}
    for path in paths:
        record = portable.media_record(path, description)
        if not bool(cutter.long_enough(record)):
            raise UserError(f"{path} is shorter than one clip; give longer files")
        starts = [cutter.evenly_spaced_start(record, k, num_clips) for k in range(num_clips)]
        clips = tf.stack([cutter.video(record, s, False, seed) for s in starts])
        window = int(cutter.windows(record).window)
        wave = record["waveform"]
        frames = tf.signal.frame(wave, window, window)
        video = tf.reduce_mean(video_features(clips), axis=0)
        audio = tf.reduce_mean(audio_features(log_mel_spectrogram(frames, spec.log_mel)), axis=0)
        video, audio = tf.math.l2_normalize(video, -1), tf.math.l2_normalize(audio, -1)
        rows["video"].append(video.numpy())
        rows["audio"].append(audio.numpy())
        rows["both"].append(tf.math.l2_normalize(tf.concat([video, audio], 0), -1).numpy())
    return {name: np.stack(values) for name, values in rows.items()}


FUSIONS = ("concat", "zmax")


def _check_fusion(fusion: str) -> None:
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")


def fused_scores(
    queries: Mapping[str, np.ndarray], database: Mapping[str, np.ndarray], fusion: str = "concat"
) -> np.ndarray:
    """Scores ``[queries, database]`` of fingerprints from :func:`file_fingerprints`.

    Args:
        queries: ``video``, ``audio`` and ``both`` fingerprints of the queries.
        database: The same for the database files.
        fusion: ``concat``: cosine similarity of the concatenated fingerprints (``both``).
            ``zmax``: per modality, each query's cosine similarities to the database minus
            their mean over the database, divided by their standard deviation; the larger
            of the two modalities' values.
    """
    if fusion == "concat":
        return queries["both"] @ database["both"].T
    _check_fusion(fusion)
    normalised = []
    for modality in ("video", "audio"):
        similarity = queries[modality] @ database[modality].T
        spread = similarity.std(axis=1, keepdims=True)
        normalised.append(
            (similarity - similarity.mean(axis=1, keepdims=True)) / np.maximum(spread, 1e-12)
        )
    return np.maximum(*normalised)


def identification(
    queries: np.ndarray, database: np.ndarray, truth: np.ndarray
) -> dict[str, float]:
    """Top-1 accuracy and mAP of queries whose original is ``database[truth[i]]``."""
    return identification_from_scores(queries @ database.T, truth)


def identification_from_scores(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy and mAP of ranking each query's database files by ``scores``."""
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.argmax(order == truth[:, None], axis=1) + 1
    return {"top1": float(np.mean(rank == 1)), "mAP": float(np.mean(1.0 / rank))}


def _source_key(path: Path, seed: int) -> str:
    """A distorted copy's name tag: its source file (path, size, mtime) and seed.

    A reused ``work_dir`` then never serves a copy of another file.
    """
    stat = os.stat(path)
    text = f"{os.path.realpath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{seed}"
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def distorted_copies(
    originals: Sequence[Path], distortions: Sequence[str], work_dir: Path, seed: int = 0
) -> dict[str, list[Path]]:
    """The distorted copies of ``originals`` per distortion, made in ``work_dir``.

    Original ``i`` is distorted with seed ``seed + i``. Copies already in ``work_dir``
    (from an earlier call with the same source files and seeds) are reused.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    queries: dict[str, list[Path]] = {}
    for name in distortions:
        queries[name] = []
        for i, path in enumerate(originals):
            target = work_dir / f"{name}_{i:04d}_{_source_key(path, seed + i)}.mp4"
            if not target.is_file():
                partial = target.with_name(f".{target.name}.partial.mp4")
                distort(path, partial, name, seed=seed + i)
                os.replace(partial, target)
            queries[name].append(target)
    return queries


def distinct_distractors(originals: Sequence[Path], distractors: Sequence[Path]) -> list[Path]:
    """``distractors`` less the originals' files, each file once, in their order.

    A query's original listed again as a distractor (``--distractor_split`` the query
    split) would put the right answer in the database twice, so that the second copy
    counted as a wrong one.
    """
    seen = {os.path.realpath(p) for p in originals}
    kept = []
    for path in distractors:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            kept.append(Path(path))
    return kept


def evaluate(
    towers_by_name: Mapping[str, tuple],
    description,
    originals: Sequence[Path],
    distractors: Sequence[Path],
    work_dir: Path,
    distortions: Sequence[str] = tuple(DISTORTIONS),
    num_clips: int = 10,
    seed: int = 0,
    fusion: str = "concat",
) -> dict[str, dict[str, dict[str, float]]]:
    """``{towers: {distortion: {top1, mAP, <fusion>_top1..., video_top1, audio_top1}}}``.

    ``top1`` and ``mAP`` rank by ``fusion`` of both modalities (:func:`fused_scores`);
    ``concat_top1`` and ``zmax_top1`` by each fusion; ``video_top1`` and ``audio_top1``
    by one modality's fingerprint alone.
    """
    _check_fusion(fusion)
    distractors = distinct_distractors(originals, distractors)
    queries = distorted_copies(originals, distortions, work_dir, seed)
    truth = np.arange(len(originals))
    results = {}
    for label, towers in towers_by_name.items():
        fns = (feature_model(towers[0]), feature_model(towers[1]))
        database = file_fingerprints(fns, description, [*originals, *distractors], num_clips)
        results[label] = {}
        for name, paths in queries.items():
            found = file_fingerprints(fns, description, paths, num_clips)
            scores = identification_from_scores(fused_scores(found, database, fusion), truth)
            for other in FUSIONS:
                scores[f"{other}_top1"] = identification_from_scores(
                    fused_scores(found, database, other), truth
                )["top1"]
            for modality in ("video", "audio"):
                alone = identification(found[modality], database[modality], truth)
                scores[f"{modality}_top1"] = alone["top1"]
            results[label][name] = scores
    return results


# -- a run's towers on a dataset (avts-eval-fingerprint) ------------------------------


@dataclasses.dataclass(frozen=True)
class RunFingerprints:
    """Fingerprinting with a run's towers.

    Attributes:
        results: Towers (``"pretrained"``, ``"random init"``) -> distortion -> scores
            (:func:`evaluate`'s).
        fusion: The fusion scored (``top1``, ``mAP``); the other's top-1 is beside it.
        queries: Query videos (per distortion).
        distractors: Distractor videos in the database, besides the originals.
    """

    results: dict[str, dict[str, dict[str, float]]]
    fusion: str
    queries: int
    distractors: int


def evaluate_run(
    checkpoint_path: str,
    data: str | None = None,
    query_split: str = "test",
    distractor_split: str = "train",
    distortions: Sequence[str] | None = None,
    num_clips: int = 10,
    fusion: str = "concat",
    random_init: bool = False,
    work_dir: str | None = None,
    seed: int = 0,
) -> RunFingerprints:
    """Top-1 and mAP per distortion of a run's towers (see the module docstring).

    Args:
        checkpoint_path: The run (its model_dir).
        data: A prepared dataset whose source files exist (None: the run's).
        query_split: Split whose videos are distorted into queries.
        distractor_split: Split added to the database.
        distortions: Names in :data:`DISTORTIONS` (None: all).
        num_clips: Clips averaged per file.
        fusion: How the modalities are combined (:data:`FUSIONS`).
        random_init: Also score the towers freshly initialised.
        work_dir: Where the distorted copies go (None: a temporary folder).
        seed: Seed of the random distortions.

    Raises:
        UserError: An unknown distortion, no prepared dataset, no usable query, or
            source files that are gone.
    """
    distortions = list(distortions or DISTORTIONS)
    unknown = [d for d in distortions if d not in DISTORTIONS]
    if unknown:
        raise UserError(f"unknown distortion {', '.join(unknown)}; valid: {', '.join(DISTORTIONS)}")
    data = data or checkpoint.run_dataset(checkpoint_path)
    if not manifest.exists(data):
        raise UserError(f"{data} is not a prepared dataset; prepare it with avts-prepare")
    found = manifest.Manifest.read(data)
    description = checkpoint.run_description(checkpoint_path)
    window_s = description.clip_spec.window_seconds(description.fps)
    queries = found.records(query_split)
    if not queries:
        raise UserError(
            f"no videos in split {query_split!r} of {data}; give --query_split "
            f"one of: {', '.join(found.split_names) or 'none'}, or prepare media "
            f"with a held-out split (avts-prepare --test_fraction)"
        )
    query_s = shortest_query_s(window_s, description.fps)
    originals = _usable(queries, query_s, "query")
    distractors = distinct_distractors(
        originals, _usable(found.records(distractor_split), window_s, "distractor")
    )
    if not originals:
        raise UserError(
            f"no video with sound in split {query_split!r} of {data} is long "
            f"enough to query with ({query_s:.2f} s: one clip, also 10% faster); "
            "give longer videos with an audio track"
        )
    missing = [str(p) for p in [*originals, *distractors] if not p.is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} source file(s) of {data} are gone (e.g. {missing[0]}); "
            "fingerprinting distorts the source files, so keep them"
        )
    video = checkpoint.load_tower(checkpoint_path, "video")
    audio = checkpoint.load_tower(checkpoint_path, "audio")
    towers = {"pretrained": (video, audio)}
    if random_init:
        keras.utils.set_random_seed(0)
        towers["random init"] = (checkpoint.fresh_copy(video), checkpoint.fresh_copy(audio))
    with tempfile.TemporaryDirectory(prefix="avts_fingerprint_") as scratch:
        results = evaluate(
            towers,
            description,
            originals,
            distractors,
            Path(work_dir or scratch),
            distortions,
            num_clips,
            seed,
            fusion=fusion,
        )
    return RunFingerprints(results, fusion, len(originals), len(distractors))


def _usable(entries, seconds: float, role: str) -> list[Path]:
    """Source files of the entries with video and sound lasting ``seconds`` or more.

    The others are named in a warning (a fingerprint is made of both modalities). An entry
    without a recorded duration (an old manifest) is kept.
    """
    kept, short, silent = [], [], []
    for entry in entries:
        if entry.duration and not (entry.num_frames and entry.num_samples):
            silent.append(entry)
        else:
            (short if 0 < entry.duration < seconds else kept).append(entry)
    if short:
        logging.warning(
            "%d %s video(s) shorter than %.2f s left out (e.g. %s)",
            len(short),
            role,
            seconds,
            short[0].path,
        )
    if silent:
        logging.warning(
            "%d %s file(s) without video or sound left out (e.g. %s)",
            len(silent),
            role,
            silent[0].path,
        )
    return [Path(e.path) for e in kept]


def table(found: RunFingerprints) -> str:
    """One row per towers and distortion: top-1, mAP, and the other scores' top-1.

    The other scores: each modality alone, and the fusion not chosen.
    """
    other = "zmax" if found.fusion == "concat" else "concat"
    rows = [
        [
            name,
            d,
            f"{v['top1']:.3f}",
            f"{v['mAP']:.3f}",
            f"{v['video_top1']:.3f}",
            f"{v['audio_top1']:.3f}",
            f"{v[other + '_top1']:.3f}",
        ]
        for name, per in found.results.items()
        for d, v in per.items()
    ]
    return report.table(
        [
            "towers",
            "distortion",
            "top-1",
            "mAP",
            "top-1 video only",
            "top-1 audio only",
            f"top-1 {other}",
        ],
        rows,
    )


def write_results(
    path: str, results: Mapping[str, Mapping[str, Mapping[str, float]]]
) -> str | None:
    """Writes ``results`` as JSON and a bar plot of top-1 beside it; the plot's path."""
    report.write_json(path, results)
    return plots.save_next_to(
        path,
        "fingerprinting: top-1 per distortion",
        lambda ax: plots.grouped_bars(
            ax,
            {name: {d: v["top1"] for d, v in per.items()} for name, per in results.items()},
            "top-1 accuracy",
        ),
    )


def headline(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """The last line: the run's top-1 and mAP, means over distortions."""
    mine = results["pretrained"].values()
    return (
        f"fingerprint: top1={np.mean([v['top1'] for v in mine]):.3f} "
        f"mAP={np.mean([v['mAP'] for v in mine]):.3f}"
    )
