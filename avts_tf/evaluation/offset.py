"""Audio-video offset of a media file, estimated with a run's sync towers.

The file is decoded as the run's training data was (``avts_tf.portable.media_record``);
a file longer than ``WHOLE_FILE_MAX_S`` only in short cuts around the clips it uses.
``num_clips`` video clips, evenly spaced where every shifted audio window stays inside the
file, are embedded once; for each candidate offset ``d`` on a grid of ``step_s`` over
``[-max_offset_s, max_offset_s]`` the audio window starting ``d`` after each clip is
embedded and scored against it with the run's sync task (the contrastive distance, or
minus the fusion head's logit); the costs are averaged over the clips. The estimate is the
grid offset of least cost, refined to a fraction of a step by the parabola through it and
its two neighbours. Positive offsets mean the audio lags the video (a sound comes after
the frame that causes it).

The confidence (ours) is how far the best cost lies below the typical cost, in units of
the costs' spread: ``(median - min) / (1.4826 * MAD)``; values under about 3 mean the
curve has no clear minimum (a static scene, silence, or audio unrelated to the picture).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from avts_tf import portable
from avts_tf.data.audio_features import log_mel_spectrogram
from avts_tf.data.clips import Clips
from avts_tf.data.ingestion import sources
from avts_tf.data.ingestion.media import probe_duration
from avts_tf.errors import UserError
from avts_tf.evaluation import checkpoint, media_edit, report, sync


@dataclasses.dataclass(frozen=True)
class OffsetEstimate:
    """The offset of one file and the curve it comes from.

    Attributes:
        path: The file.
        offset_s: Estimated offset in seconds (positive: audio lags video).
        confidence: ``(median - min) / (1.4826 * MAD)`` of the cost curve.
        offsets_s: The candidate offsets.
        costs: Mean sync cost per candidate (lower: more in sync).
        clips: Video clips averaged.
    """

    path: str
    offset_s: float
    confidence: float
    offsets_s: np.ndarray
    costs: np.ndarray
    clips: int


def _cost_fn(task):
    """``(video, audio) embeddings -> cost`` (lower: in sync) from the run's sync task."""
    in_sync_when_low = bool(task.predict_in_sync(tf.constant([-1e9]))[0])
    sign = 1.0 if in_sync_when_low else -1.0
    return lambda video, audio: sign * task.score(video, audio)


#: Files the container declares longer than this are read in ``num_clips`` short cuts around
#: the chosen clips instead of whole (ours): a film's frames need not fit in memory.
WHOLE_FILE_MAX_S = 120.0


def estimate_offset(
    model,
    description,
    path: str | os.PathLike,
    *,
    max_offset_s: float = 1.0,
    step_s: float | None = None,
    num_clips: int = 16,
    batch_size: int = 64,
) -> OffsetEstimate:
    """Estimates the audio-video offset of ``path`` (see the module docstring).

    A file longer than :data:`WHOLE_FILE_MAX_S` is decoded only around its ``num_clips``
    evenly spaced clips (one cut of a window plus twice ``max_offset_s`` each), so memory
    and time do not grow with its length.

    Args:
        model: The run's ``AVTSModel`` with its sync task (``evaluation.sync.sync_model``).
        description: The run's ``RunDescription``.
        path: Any FFmpeg-readable file with video and audio.
        max_offset_s: Largest offset tried, either way.
        step_s: Grid step (default: the log-mel hop, 10-20 ms).
        num_clips: Video clips averaged (fewer when the file is short).
        batch_size: Audio windows per forward pass.

    Raises:
        UserError: The file is shorter than one clip plus twice ``max_offset_s``, or lacks a
            stream.
    """
    if max_offset_s <= 0:
        raise UserError(f"--max_offset_s is {max_offset_s}; give a positive number of seconds")
    spec, fps = description.clip_spec, description.fps
    rate = spec.log_mel.sample_rate
    step = max(1, int(round((step_s or spec.log_mel.hop_s) * rate)))
    reach = int(round(max_offset_s * rate / step)) * step
    shifts = np.arange(-reach, reach + 1, step, dtype=np.int64)
    scorer = _ClipScorer(model, spec, fps, shifts, batch_size)
    duration = probe_duration(path)
    if duration is not None and duration > WHOLE_FILE_MAX_S:
        costs = _costs_of_cuts(scorer, description, path, duration, num_clips, max_offset_s)
    else:
        record = _record(path, description)
        first, last = scorer.clip_range(record)
        if last < first:
            raise _too_short(path, spec.window_seconds(fps), max_offset_s)
        count = min(num_clips, last - first + 1)
        starts = np.unique(np.round(np.linspace(first, last, count)).astype(np.int64))
        costs = scorer.costs(record, starts)
    curve = costs.mean(axis=1)
    best = int(np.argmin(curve))
    refined = float(shifts[best])
    if 0 < best < len(curve) - 1:
        left, mid, right = curve[best - 1], curve[best], curve[best + 1]
        bend = left - 2 * mid + right
        if bend > 0:
            refined += 0.5 * (left - right) / bend * step
    spread = 1.4826 * float(np.median(np.abs(curve - np.median(curve))))
    confidence = float((np.median(curve) - curve[best]) / max(spread, 1e-12))
    return OffsetEstimate(
        os.fspath(path), refined / rate, confidence, shifts / rate, curve, costs.shape[1]
    )


def _record(path, description, start: float | None = None, end: float | None = None):
    record = portable.media_record(path, description, start=start, end=end)
    if int(record["num_frames"]) == 0 or int(record["num_samples"]) == 0:
        raise UserError(
            f"{path} needs both video and audio to estimate their offset; give a file with both"
        )
    return record


def _too_short(path, window_s: float, max_offset_s: float) -> UserError:
    return UserError(
        f"{path} is too short to try offsets of ±{max_offset_s:g} s (needs "
        f"{window_s + 2 * max_offset_s:.2f} s of video and audio); lower "
        "--max_offset_s"
    )


def _costs_of_cuts(
    scorer: _ClipScorer, description, path, duration: float, num_clips: int, max_offset_s: float
) -> np.ndarray:
    """Costs of one clip in each of ``num_clips`` evenly spaced cuts of a long file."""
    fps = description.fps
    # A window plus both reaches, and two frames to spare for rounding at the cut's ends.
    span = description.clip_spec.window_seconds(fps) + 2 * max_offset_s + 2 / fps
    columns = []
    for start in np.linspace(0.0, max(0.0, duration - span), num_clips):
        try:
            record = _record(path, description, start=float(start), end=float(start) + span)
        except UserError:  # A declared duration past the decodable end: that cut is lost.
            continue
        first, last = scorer.clip_range(record)
        if last >= first:
            columns.append(scorer.costs(record, np.array([first], np.int64)))
    if not columns:
        raise _too_short(path, description.clip_spec.window_seconds(fps), max_offset_s)
    return np.concatenate(columns, axis=1)


class _ClipScorer:
    """Sync costs of video clips of a record against their audio shifted by ``shifts``."""

    def __init__(self, model, spec, fps: float, shifts: np.ndarray, batch_size: int):
        self.model, self.spec, self.fps = model, spec, fps
        self.shifts, self.batch_size = shifts, batch_size
        self.cutter = Clips(spec, fps)
        self.cost = _cost_fn(model.objective)

    def clip_range(self, record) -> tuple[int, int]:
        """First and last clip start frame whose every shifted audio window is inside."""
        rate = self.spec.log_mel.sample_rate  # the records' rate (training checks it)
        windows = self.cutter.windows(record)
        reach = int(self.shifts[-1])
        first = int(np.ceil(reach * self.fps / rate))
        last = min(
            int(windows.last_frame),
            int(
                np.floor(
                    (int(record["num_samples"]) - int(windows.window) - reach) * self.fps / rate
                )
            ),
        )
        return first, last

    def costs(self, record, starts: np.ndarray) -> np.ndarray:
        """``[shifts, clips]`` costs of the clips starting at frames ``starts``."""
        cutter, shifts = self.cutter, self.shifts
        window = int(cutter.windows(record).window)
        seed = tf.zeros([2], tf.int32)
        clips = tf.stack([cutter.video(record, tf.constant(s), False, seed) for s in starts])
        video = self.model.video_tower(clips, training=False)
        audio_starts = np.array([int(cutter.frame_to_sample(tf.constant(s))) for s in starts])
        wave = record["waveform"]
        pairs = [(i, j) for i in range(len(shifts)) for j in range(len(starts))]
        costs = np.zeros((len(shifts), len(starts)), np.float64)
        for begin in range(0, len(pairs), self.batch_size):
            chunk = pairs[begin : begin + self.batch_size]
            offsets = [int(audio_starts[j] + shifts[i]) for i, j in chunk]
            frames = tf.stack([wave[o : o + window] for o in offsets])
            audio = self.model.audio_tower(
                log_mel_spectrogram(frames, self.spec.log_mel), training=False
            )
            values = self.cost(tf.gather(video, [j for _, j in chunk]), audio).numpy()
            for (i, j), value in zip(chunk, values, strict=True):
                costs[i, j] = value
        return costs


def plot(estimates: Sequence[OffsetEstimate], path: str | os.PathLike) -> None:
    """Draws each file's cost against offset, with its estimate, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib; pip install 'avts_tf[plots]'") from None
    fig, ax = plt.subplots(figsize=(7, 4))
    for estimate in estimates:
        (line,) = ax.plot(estimate.offsets_s, estimate.costs, label=Path(estimate.path).name)
        ax.axvline(estimate.offset_s, color=line.get_color(), linestyle="--", linewidth=1)
    ax.set_xlabel("offset (s): audio lags video when positive")
    ax.set_ylabel("sync cost (lower: in sync)")
    ax.set_title("audio-video offset")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_shifted(source: str | os.PathLike, target: str | os.PathLike, offset_s: float) -> None:
    """Re-encodes ``source`` with its audio moved ``offset_s`` later (earlier if negative).

    The audio is delayed by prepending silence (or advanced by dropping its start) and cut
    or padded to its original length; the video frames are re-encoded unchanged in timing
    (H.264, AAC, with PyAV). For making test material with a known offset.
    """
    clip = media_edit.read(source)
    audio = clip.audio
    shift = int(round(offset_s * clip.sample_rate))
    if shift >= 0:
        moved = np.concatenate([np.zeros(shift, np.float32), audio])[: len(audio)]
    else:
        moved = np.concatenate([audio[-shift:], np.zeros(-shift, np.float32)])
    media_edit.write(target, dataclasses.replace(clip, audio=moved))


# -- a run's sync towers on media files (avts-av-offset) ------------------------------


@dataclasses.dataclass(frozen=True)
class OffsetRun:
    """The offsets of several files.

    Attributes:
        estimates: One per file measured.
        failed: ``(path, problem)`` of each file that could not be measured.
    """

    estimates: list[OffsetEstimate]
    failed: list[tuple[str, str]]


def estimate_files(
    checkpoint_path: str | os.PathLike,
    paths: Sequence[str],
    max_offset_s: float = 1.0,
    step_s: float | None = None,
    num_clips: int = 16,
) -> OffsetRun:
    """The offset of each media file (a folder stands for the media files under it).

    Args:
        checkpoint_path: A sync training run's model_dir.
        paths: Media files or folders.
        max_offset_s: Largest offset tried either way, in seconds.
        step_s: Offset grid step (None: the run's log-mel hop).
        num_clips: Video clips averaged per file.

    Raises:
        UserError: A path that does not exist, folders without media, or, for one file,
            why it cannot be measured (of several, such a file is listed in ``failed``).
    """
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UserError(f"no such file: {', '.join(missing)}; give existing media files")
    folders = [p for p in paths if Path(p).is_dir()]
    paths = [str(f) for p in paths for f in (sources.walk_media(p) if Path(p).is_dir() else [p])]
    if not paths:
        raise UserError(
            f"no media file under {', '.join(folders)}; give media files or folders holding them"
        )
    model, _ = sync.sync_model(checkpoint_path, ("easy",))
    description = checkpoint.run_description(checkpoint_path)
    estimates, failed = [], []
    for path in paths:
        try:
            estimates.append(
                estimate_offset(
                    model,
                    description,
                    path,
                    max_offset_s=max_offset_s,
                    step_s=step_s,
                    num_clips=num_clips,
                )
            )
        except UserError as err:
            if len(paths) == 1:
                raise
            failed.append((path, str(err)))
    return OffsetRun(estimates, failed)


def as_json(found: OffsetRun) -> dict:
    """The estimates and failures, JSON-ready."""
    return {
        "estimates": [
            {"path": e.path, "offset_s": e.offset_s, "confidence": e.confidence, "clips": e.clips}
            for e in found.estimates
        ],
        "failed": [{"path": p, "error": m} for p, m in found.failed],
    }


def table(found: OffsetRun) -> str:
    """One row per file: offset, confidence and clips (``failed`` rows last)."""
    rows = [[e.path, f"{e.offset_s:+.3f}", f"{e.confidence:.1f}", e.clips] for e in found.estimates]
    rows += [[p, "failed", "-", 0] for p, _ in found.failed]
    return report.table(["file", "offset_s", "confidence", "clips"], rows)
