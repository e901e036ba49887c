"""Audio-video offset of a media file, estimated with a run's sync towers.

The file is decoded as the run's training data was (``avts_tf.portable.media_record``).
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

from avts_tf.evaluation import media_edit
from avts_tf.evaluation.errors import BadInput


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

    Args:
        model: The run's ``AVTSModel`` with its sync task (``evaluation.sync.sync_model``).
        description: The run's ``RunDescription``.
        path: Any FFmpeg-readable file with video and audio.
        max_offset_s: Largest offset tried, either way.
        step_s: Grid step (default: the log-mel hop, 10-20 ms).
        num_clips: Video clips averaged (fewer when the file is short).
        batch_size: Audio windows per forward pass.

    Raises:
        BadInput: The file is shorter than one clip plus twice ``max_offset_s``, or lacks a
            stream.
    """
    from avts_tf.data.audio_features import log_mel_spectrogram
    from avts_tf.data.clips import Clips
    from avts_tf.portable import media_record

    if max_offset_s <= 0:
        raise BadInput(f"--max_offset_s is {max_offset_s}; give a positive number of seconds")
    spec, fps = description.clip_spec, description.fps
    record = media_record(path, description)
    rate = int(record["sample_rate"]) if "sample_rate" in record else spec.log_mel.sample_rate
    if int(record["num_frames"]) == 0 or int(record["num_samples"]) == 0:
        raise BadInput(f"{path} needs both video and audio to estimate their offset")
    cutter = Clips(spec, fps)
    windows = cutter.windows(record)
    window = int(windows.window)
    step = max(1, int(round((step_s or spec.log_mel.hop_s) * rate)))
    reach = int(round(max_offset_s * rate / step)) * step
    shifts = np.arange(-reach, reach + 1, step, dtype=np.int64)
    num_samples = int(record["num_samples"])
    first = int(np.ceil(reach * fps / rate))
    last = min(int(windows.last_frame),
               int(np.floor((num_samples - window - reach) * fps / rate)))
    if last < first:
        need = spec.window_seconds(fps) + 2 * max_offset_s
        raise BadInput(f"{path} is too short to try offsets of ±{max_offset_s:g} s (needs "
                       f"{need:.2f} s of video and audio); lower --max_offset_s")
    count = min(num_clips, last - first + 1)
    starts = np.unique(np.round(np.linspace(first, last, count)).astype(np.int64))
    seed = tf.zeros([2], tf.int32)
    clips = tf.stack([cutter.video(record, tf.constant(s), False, seed) for s in starts])
    video = model.video_tower(clips, training=False)
    audio_starts = np.array([int(cutter.frame_to_sample(tf.constant(s))) for s in starts])
    wave = record["waveform"]
    cost = _cost_fn(model.objective)
    pairs = [(i, j) for i in range(len(shifts)) for j in range(len(starts))]
    costs = np.zeros((len(shifts), len(starts)), np.float64)
    for begin in range(0, len(pairs), batch_size):
        chunk = pairs[begin : begin + batch_size]
        offsets = [int(audio_starts[j] + shifts[i]) for i, j in chunk]
        frames = tf.stack([wave[o : o + window] for o in offsets])
        audio = model.audio_tower(log_mel_spectrogram(frames, spec.log_mel), training=False)
        values = cost(tf.gather(video, [j for _, j in chunk]), audio).numpy()
        for (i, j), value in zip(chunk, values, strict=True):
            costs[i, j] = value
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
    return OffsetEstimate(os.fspath(path), refined / rate, confidence, shifts / rate, curve,
                          len(starts))


def plot(estimates: Sequence[OffsetEstimate], path: str | os.PathLike) -> None:
    """Draws each file's cost against offset, with its estimate, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInput("--plot needs matplotlib; pip install 'avts_tf[plots]'") from None
    fig, ax = plt.subplots(figsize=(7, 4))
    for estimate in estimates:
        line, = ax.plot(estimate.offsets_s, estimate.costs, label=Path(estimate.path).name)
        ax.axvline(estimate.offset_s, color=line.get_color(), linestyle="--", linewidth=1)
    ax.set_xlabel("offset (s): audio lags video when positive")
    ax.set_ylabel("sync cost (lower: in sync)")
    ax.set_title("audio-video offset")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_shifted(source: str | os.PathLike, target: str | os.PathLike,
                  offset_s: float) -> None:
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
