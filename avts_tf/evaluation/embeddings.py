"""Per-file embeddings with timestamps, one ``.npz`` per input file (as OpenL3 writes them).

Each file's audio is cut into windows of the audio tower's input length every ``hop_s``
seconds (default: the window length, no overlap); its video into clips starting every
``hop_s`` seconds (rounded to whole frames; default: the clip's length). Every window's
features are its layer's output pooled over time and space (:mod:`features`). A file's
``.npz`` holds ``embedding`` ``[clips, dim]`` and ``timestamps`` ``[clips]``, the
windows' start times in seconds. :func:`extract` writes them, or one combined ``.npz``,
for ``avts-extract``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import avts_tf.backbones  # noqa: F401  (registers the towers' custom layers, for loading)
from avts_tf.data import pipeline
from avts_tf.data.clips import Clips
from avts_tf.data.manifest import Manifest
from avts_tf.errors import UserError
from avts_tf.evaluation import checkpoint, features, prepared, shared_space
from avts_tf.evaluation.prepared import DataSource


def video_hop_clips_fn(
    spec: pipeline.ClipSpec, fps: float, hop_frames: int
) -> Callable[[dict], tf.Tensor]:
    """``record -> [W, T, S, S, 3]`` centre-cropped clips starting every ``hop_frames``."""
    cutter = Clips(spec, fps, video_only=True)
    signature = tf.TensorSpec(spec.video_shape(), tf.float32)

    def clips(record: dict) -> tf.Tensor:
        seed = tf.zeros([2], tf.int32)
        last = cutter.windows(record).last_frame
        starts = tf.range(0, last + 1, hop_frames, dtype=tf.int64)
        return tf.map_fn(
            lambda s: cutter.video(record, s, False, seed), starts, fn_output_signature=signature
        )

    return clips


def per_file_features(
    tower: keras.Model,
    which: str,
    data_dir: str | Path,
    spec: pipeline.ClipSpec,
    *,
    hop_s: float | None = None,
    layer: str = "auto",
    pool: str = "avg",
    splits: Sequence[str] | None = None,
    batch_size: int = 32,
    window_s: float = 1.0,
    progress: bool = True,
    head: keras.layers.Layer | None = None,
) -> tuple[features.Features, np.ndarray]:
    """Features of every window of every file, and each window's start in seconds.

    Args:
        tower: The tower.
        which: ``"audio"`` or ``"video"``.
        data_dir: A prepared dataset.
        spec: Clip and log-mel settings of the tower.
        hop_s: Seconds between window starts (default: the window length).
        layer: Layer to read (``"auto"``: ``avgpool`` or the output).
        pool: ``"avg"`` or ``"max"`` over time and space.
        splits: Splits to read (default: all).
        batch_size: Windows per forward pass.
        window_s: Audio window when the tower takes any length.
        progress: Show a progress bar.
        head: Maps the pooled features into another space (``features.feature_model``).

    Returns:
        The features (``file_index`` names each window's file) and the timestamps.
    """
    embed = features.feature_model(tower, layer, pool, head)
    info = features.feature_info(tower, which, layer, pool, head)
    if which == "audio":
        features.check_sample_rate(data_dir, spec.log_mel)
        rate = spec.log_mel.sample_rate
        frames = tower.inputs[0].shape[1]
        window = (
            features.window_samples(spec.log_mel, frames) if frames else int(round(window_s * rate))
        )
        hop = max(1, int(round(hop_s * rate))) if hop_s else window
        info.update(window_samples=str(window), hop_samples=str(hop))
        feats = features.extract(
            data_dir,
            features.audio_windows_fn(spec.log_mel, window, hop=hop),
            embed,
            splits,
            batch_size,
            keep_fn=features.has_audio,
            progress=progress,
            info=info,
        )
        step = hop / rate
    else:
        fps = Manifest.read(data_dir).fps
        if fps <= 0:
            raise UserError(
                f"{data_dir} holds no video frames (audio-only records); give media with video"
            )
        hop = max(1, int(round(hop_s * fps))) if hop_s else spec.num_frames * spec.frame_stride
        info["hop_frames"] = str(hop)
        feats = features.extract(  # Video clips only: files without sound count.
            data_dir,
            video_hop_clips_fn(spec, fps, hop),
            embed,
            splits,
            batch_size,
            keep_fn=features.long_enough_fn(spec, fps, video_only=True),
            progress=progress,
            info=info,
        )
        step = hop / fps
    return feats, window_starts(feats.file_index) * step


def window_starts(file_index: np.ndarray) -> np.ndarray:
    """Index of each window among its file's windows (``[0, 0, 1]`` -> ``[0, 0, 1]``)."""
    starts = np.zeros(len(file_index), np.int64)
    for owner in np.unique(file_index):
        rows = np.flatnonzero(file_index == owner)
        starts[rows] = np.arange(len(rows))
    return starts


def write_per_file(
    feats: features.Features,
    timestamps: np.ndarray,
    output_dir: str | Path,
    duplicates: Mapping[str, str] | None = None,
) -> list[Path]:
    """Writes ``<output_dir>/<file id>.npz`` (``embedding``, ``timestamps``) per file.

    Args:
        feats: Per-window features.
        timestamps: Each window's start in seconds.
        output_dir: The folder.
        duplicates: ``{duplicate id: id ingested in its place}`` (a link or a copy of an
            input, ingested once: ``SkippedEntry.same_as``); each gets its original's
            arrays under its own name, so every input file has its ``.npz``.

    Returns:
        The files written, originals then duplicates.
    """
    root = Path(output_dir)
    by_id = {}
    for index, file_id in enumerate(feats.ids):
        rows = feats.file_index == index
        by_id[file_id] = {
            "embedding": feats.features[rows],
            "timestamps": timestamps[rows].astype(np.float64),
        }
    original_of = {file_id: file_id for file_id in by_id}
    original_of.update(
        (duplicate, kept) for duplicate, kept in sorted((duplicates or {}).items()) if kept in by_id
    )
    written = []
    for name, original in original_of.items():
        path = root / f"{name}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **by_id[original])
        written.append(path)
    return written


# -- a tower's features of a dataset (avts-extract) -----------------------------------

SHARED = "shared"
"""The layer name that reads the space the run compares audio with video in."""


def which_tower(checkpoint_path: str | Path, tower: str = "auto") -> str:
    """``"video"`` or ``"audio"``: ``tower``, or for ``auto`` the file's name or input rank.

    Raises:
        UserError: ``auto`` for a run's folder, or a file that does not load.
    """
    if tower != "auto":
        return tower
    path = Path(checkpoint_path)
    for name in checkpoint.TOWERS:
        if path.name.startswith(name):
            return name
    if path.suffix == ".keras":
        try:
            rank = len(keras.saving.load_model(path, compile=False).inputs[0].shape)
        except Exception as err:  # noqa: BLE001
            raise UserError(f"cannot load {path}: {type(err).__name__}: {err}") from None
        return "video" if rank == 5 else "audio"
    if not path.exists():
        raise UserError(
            f"checkpoint {path} does not exist; give a .keras tower or a training run's model_dir"
        )
    raise UserError("--checkpoint is a model_dir: give --tower video or --tower audio")


def layer_and_head(
    checkpoint_path: str | Path, which: str, tower: keras.Model, layer: str
) -> tuple[str, keras.layers.Layer | None]:
    """The layer to read and the head to map it through (``shared``: the run's).

    Raises:
        UserError: For an unknown layer, or ``shared`` without a training run.
    """
    if layer != SHARED:
        features.resolve_layer(tower, layer, also_valid=(SHARED,))
        return layer, None
    run = checkpoint.run_dir(checkpoint_path)
    if run is None:
        raise UserError(
            f"--layer={SHARED} reads the space of a training run's task, but "
            f"{checkpoint_path} is not in a run's model_dir; give the run's "
            "--model_dir"
        )
    towers = {
        which: tower,
        **{w: checkpoint.load_tower(run, w) for w in checkpoint.TOWERS if w != which},
    }
    space = shared_space.of_run(run, towers["video"], towers["audio"])
    return "output", space.head(which)


@dataclasses.dataclass(frozen=True)
class Extracted:
    """What :func:`extract` wrote.

    Attributes:
        combined: The features written to one ``.npz`` (None: not asked for).
        per_file: The features written one ``.npz`` per file (None: not asked for).
        written: The per-file ``.npz`` files, duplicates of another input included.
    """

    combined: features.Features | None
    per_file: features.Features | None
    written: list[Path]


def extract(
    checkpoint_path: str | Path,
    which: str,
    tower: keras.Model,
    source: DataSource,
    stack: contextlib.ExitStack,
    layer: str = "auto",
    pool: str = "avg",
    splits: Sequence[str] | None = None,
    batch_size: int = 32,
    num_clips: int = 10,
    window_s: float = 1.0,
    max_windows: int | None = None,
    hop_s: float | None = None,
    output: str | None = None,
    output_dir: str | None = None,
    progress: bool = True,
) -> Extracted:
    """Frozen features of ``tower`` (``which``) over a dataset, written as asked.

    Args:
        checkpoint_path: The ``.keras`` tower or run ``tower`` comes from.
        which: ``"video"`` or ``"audio"``.
        tower: The tower.
        source: The data (media is prepared first, into ``stack``'s lifetime).
        stack: Holds media's prepared copy.
        layer: Layer to read (``auto``, a name, or :data:`SHARED`).
        pool: ``avg`` or ``max`` over time and space.
        splits: Splits to read (None: all).
        batch_size: Windows per forward pass.
        num_clips: Video clips per video (combined file).
        window_s: Audio window when the tower accepts any length.
        max_windows: At most this many audio windows per file (combined file).
        hop_s: Seconds between window starts of the per-file files (None: no overlap).
        output: The combined ``.npz`` to write, or None.
        output_dir: The folder of per-file ``.npz`` files, or None.
        progress: Show progress bars.

    Raises:
        UserError: An unknown layer, ``shared`` without a run, or unusable data.
    """
    layer, head = layer_and_head(checkpoint_path, which, tower, layer)  # Fails early.
    spec = checkpoint.clip_spec_for(
        checkpoint_path, tower if which == "video" else None, tower if which == "audio" else None
    )
    data = prepared.prepared_data(
        source,
        stack,
        sample_rate=spec.log_mel.sample_rate,
        audio_only=which == "audio",
        video_only=which == "video",
    )
    combined = per_file = None
    written: list[Path] = []
    if output:
        combined = features.tower_features(
            tower,
            which,
            data,
            spec,
            layer=layer,
            pool=pool,
            splits=splits,
            batch_size=batch_size,
            num_clips=num_clips,
            window_s=window_s,
            max_windows=max_windows,
            progress=progress,
            head=head,
        )
        combined.info["checkpoint"] = str(checkpoint_path)
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        combined.save(output)
    if output_dir:
        per_file, timestamps = per_file_features(
            tower,
            which,
            data,
            spec,
            hop_s=hop_s,
            layer=layer,
            pool=pool,
            splits=splits,
            batch_size=batch_size,
            window_s=window_s,
            progress=progress,
            head=head,
        )
        duplicates = {e.id: e.same_as for e in Manifest.read(data).skipped if e.same_as}
        written = write_per_file(per_file, timestamps, output_dir, duplicates)
    return Extracted(combined, per_file, written)
