"""Audio-visual synchronization accuracy of a training run on a held-out prepared set.

The model is rebuilt from the run's ``model_dir``: its two ``.keras`` towers and the task
of its ``run.json`` (margin and decision threshold; a fusion task's head weights come
from the run's newest checkpoint), or everything from the newest checkpoint when the
towers were not saved yet. Clips are the pipeline's deterministic evaluation clips;
``sync_accuracy`` uses easy negatives (the paper's protocol) and ``sync_accuracy_<kind>``
each same-video negative kind the run's sync task knows, cut with the run's samplers
(the task's defaults for kinds the run did not train with: ``SyncObjective.scoring``). All
are balanced accuracies (mean of the accuracy on in-sync and on out-of-sync pairs).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras

from avts_tf.data import pipeline
from avts_tf.data.manifest import Manifest
from avts_tf.errors import UserError
from avts_tf.evaluation import checkpoint, features, prepared, records_io, report
from avts_tf.evaluation.prepared import DataSource
from avts_tf.models import AVTSModel
from avts_tf.tasks.base import Task


def clip_cutter(model_dir: str | Path, kinds: Sequence[str] | None = None) -> Task:
    """The run's sync task, scoring ``kinds`` and cutting their negatives.

    The task says which kinds it knows and cuts them (``scoring``): kinds the run trained
    with keep its samplers, the others get the task's defaults; its ``eval_kinds`` are
    ``("easy", *others)``. A run of several tasks (``objectives.multi``, e.g. AVTS +
    temporal) gives its sync task.

    Args:
        model_dir: The run's folder.
        kinds: Negative kinds to score (None: every kind the task knows).

    Raises:
        UserError: If the run has no ``run.json`` or no sync task, or a kind is unknown.
    """
    description = checkpoint.run_description(model_dir)
    run_task = description.build_task()
    task = run_task.sync_task()
    if task is None:
        names = ", ".join(type(t).__name__ for t in run_task.parts())
        raise UserError(
            f"the task of run {model_dir} ({names}) is not a synchronization "
            "task; give the model_dir of a run trained with objectives.contrastive "
            "or objectives.fusion"
        )
    return task.scoring(kinds)


def sync_model(model_dir: str | Path, kinds: Sequence[str] | None = None):
    """The run's ``AVTSModel`` (scoring ``kinds``, see :func:`clip_cutter`) and its ``ClipSpec``.

    Raises:
        UserError: If ``model_dir`` is not a training run's folder.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(
            f"model_dir {model_dir} does not exist; give the --model_dir of an avts-train run"
        )
    task = clip_cutter(model_dir, kinds)
    saved = all((model_dir / f"{w}_tower.keras").is_file() for w in checkpoint.TOWERS)
    if not saved:
        model = checkpoint.rebuild_run_model(model_dir, task)
    else:
        video = checkpoint.load_tower(model_dir, "video")
        audio = checkpoint.load_tower(model_dir, "audio")
        model = AVTSModel(video, audio, task)
        if task.trainable_weights:
            checkpoint.load_task_weights(model, model_dir, "the run's task has a trained head")
    spec = checkpoint.clip_spec_for(model_dir, model.video_tower, model.audio_tower)
    return model, spec


def evaluate_sync(
    model_dir: str | Path,
    data_dir: str | Path,
    split: str = "test",
    kinds: Sequence[str] | None = None,
    clips_per_video: int = 4,
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, float]:
    """Sync accuracies of a run on ``split`` of a prepared dataset.

    ``kinds``: the negative kinds to score (easy always; None: every kind the run's sync
    task knows).

    Returns:
        ``sync_accuracy`` (easy negatives) and ``sync_accuracy_<kind>`` for the other
        kinds, plus ``pairs_<kind>``: the number of out-of-sync pairs each was scored on.

    Raises:
        UserError: For a bad run folder, an unknown kind, a missing split or clips that do
            not fit the towers.
    """
    model, spec = sync_model(model_dir, kinds)
    kinds = model.objective.eval_kinds
    records_io.check_splits(data_dir, [split])
    prepared = Manifest.read(data_dir)
    fps = prepared.fps
    prepared.require_clip_windows(split, spec.window_seconds(fps), "evaluation")
    features.check_sample_rate(data_dir, spec.log_mel)
    expected = tuple(model.audio_tower.inputs[0].shape[1:])
    if any(e is not None and e != g for e, g in zip(expected, spec.audio_shape(fps), strict=True)):
        raise UserError(
            f"{data_dir} ({fps:g} fps) gives audio windows {spec.audio_shape(fps)} but the "
            f"audio tower takes {expected}; prepare it at the run's fps"
        )
    data = pipeline.eval_dataset(
        data_dir,
        batch_size,
        task=model.objective,
        spec=spec,
        split=split,
        clips_per_video=clips_per_video,
        seed=seed,
    )
    model.compile(optimizer=keras.optimizers.SGD())
    with warnings.catch_warnings():  # Keras warns at the end of any finite dataset.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        results = model.evaluate(data, return_dict=True, verbose=0)
    out = {k: float(v) for k, v in results.items()}
    for kind in kinds:
        out[f"pairs_{kind}"] = int(model.objective.kind_accuracy[kind].neg_count.numpy())
    if out["pairs_easy"] == 0:
        raise UserError(
            f"split {split!r} of {data_dir} gives no out-of-sync pair (easy "
            "negatives need two or more videos long enough for a clip); pass a "
            "--split with more videos or re-prepare with a larger --test_fraction"
        )
    return out


def evaluate_run(
    model_dir: str | Path,
    source: DataSource,
    kinds: Sequence[str] | None = None,
    split: str = "test",
    split_given: bool = True,
    clips_per_video: int = 4,
    batch_size: int = 32,
    seed: int = 0,
) -> tuple[tuple[str, ...], dict[str, float]]:
    """:func:`evaluate_sync` on the data ``source`` names (media is prepared first).

    Args:
        model_dir: A training run's folder.
        source: A prepared dataset, or media prepared at the run's sample rate.
        kinds: Negative kinds to score (easy is always scored; None: every kind the run's
            sync task knows).
        split: The held-out split.
        split_given: Whether ``split`` was asked for; if not, media prepared here into one
            split (a folder, a file) is scored whole, whatever that split is named.
        clips_per_video: Clips per video.
        batch_size: Pairs per forward pass.
        seed: Seed of the negative pairs.

    Returns:
        The kinds scored (easy first) and :func:`evaluate_sync`'s results.
    """
    spec_rate = checkpoint.run_clip_spec(model_dir).log_mel.sample_rate
    # A run without a sync task, or an unknown kind: refused before any decoding.
    kinds = clip_cutter(model_dir, kinds).eval_kinds
    with contextlib.ExitStack() as stack:
        data = prepared.prepared_data(source, stack, sample_rate=spec_rate)
        present = Manifest.read(data).split_names
        if not (
            split_given
            or records_io.is_prepared(source.data)
            or split in present
            or len(present) != 1
        ):
            split = present[0]  # every file given is scored
        results = evaluate_sync(model_dir, data, split, kinds, clips_per_video, batch_size, seed)
    return kinds, results


def table(kinds: Sequence[str], results: dict[str, float]) -> str:
    """Sync accuracy and negative pairs per negative kind (``n/a`` without pairs)."""
    rows = []
    for kind in kinds:
        key = "sync_accuracy" if kind == "easy" else f"sync_accuracy_{kind}"
        label = "easy (paper protocol)" if kind == "easy" else kind
        pairs = results[f"pairs_{kind}"]
        accuracy = report.mean_std(results[key]) if pairs else "n/a (videos too short)"
        rows.append([label, accuracy, pairs])
    return report.table(["negatives", "sync accuracy %", "negative pairs"], rows)
