"""Action recognition by fine-tuning the video tower (optionally fused with the audio tower).

Training is clip-level: random clips from the training pipeline (``pipeline.train_dataset``,
random start, crop and flip) labelled with their record's ``label``. Testing is
video-level: the softmax of ``clips_per_video`` evenly spaced centre-cropped clips
(``pipeline.eval_dataset``) is averaged per video. ``fit(head_steps=...)`` can first fit
the classifier alone on the frozen towers ("LP-FT"). With an audio tower (the paper's
multisensory row) each clip's aligned audio window goes through the audio tower and the
two feature vectors are concatenated before the classifier.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from avts_tf import portable
from avts_tf.data import pipeline
from avts_tf.data.ingestion import sources
from avts_tf.data.manifest import Manifest
from avts_tf.errors import UserError
from avts_tf.evaluation import checkpoint, features, prepared, records_io
from avts_tf.evaluation.prepared import DataSource

_POOLING = {
    3: keras.layers.GlobalAveragePooling1D,
    4: keras.layers.GlobalAveragePooling2D,
    5: keras.layers.GlobalAveragePooling3D,
}


def _trunk(tower: keras.Model, layer: str, which: str) -> keras.Model:
    """The tower up to ``layer``, pooled to ``(B, C)`` (shares the tower's weights)."""
    name = features.resolve_layer(tower, layer)
    output = tower.outputs[0] if name is None else tower.get_layer(name).output
    rank = len(output.shape)
    if rank > 2:
        output = _POOLING[rank](name=f"{tower.name}_pool")(output)
    return keras.Model(tower.inputs, output, name=f"{which}_trunk")


def classifier(
    video_tower: keras.Model,
    num_classes: int,
    audio_tower: keras.Model | None = None,
    layer: str = "auto",
    dropout: float = 0.5,
) -> keras.Model:
    """A classifier on the video tower's features (and the audio tower's, if given).

    Args:
        video_tower: The video tower (its weights are trained).
        num_classes: Number of classes.
        audio_tower: Optional audio tower for audio-visual fusion.
        layer: Tower layer to read (``"auto"``: ``avgpool``, else the output).
        dropout: Dropout rate before the linear classifier.

    Returns:
        A model taking ``{"video"[, "audio"]}`` and returning logits.
    """
    inputs = {"video": keras.Input(video_tower.inputs[0].shape[1:], name="video")}
    feats = [_trunk(video_tower, layer, "video")(inputs["video"])]
    if audio_tower is not None:
        inputs["audio"] = keras.Input(audio_tower.inputs[0].shape[1:], name="audio")
        feats.append(_trunk(audio_tower, layer, "audio")(inputs["audio"]))
    x = feats[0] if len(feats) == 1 else keras.layers.Concatenate(name="fusion")(feats)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="classifier", dtype="float32")(x)
    return keras.Model(inputs, logits, name="finetune")


def check_audio_shape(audio_tower: keras.Model, spec: pipeline.ClipSpec, fps: float) -> None:
    """Raises ``UserError`` when the pipeline's audio windows do not fit the audio tower."""
    expected = tuple(audio_tower.inputs[0].shape[1:])
    given = spec.audio_shape(fps)
    if any(e is not None and e != g for e, g in zip(expected, given, strict=True)):
        raise UserError(
            f"clips of this dataset ({fps:g} fps) give audio inputs {given} but the audio tower "
            f"takes {expected}; prepare the data at the pretraining fps"
        )


def _inputs(batch: dict, fusion: bool) -> dict:
    return {"video": batch["video"], **({"audio": batch["audio"]} if fusion else {})}


def train_clips(
    data_dir: str | Path,
    spec: pipeline.ClipSpec,
    batch_size: int,
    split: str = "train",
    fusion: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Endless ``(inputs, label, weight)`` batches of random clips; unlabelled weigh 0."""
    data = pipeline.train_dataset(
        data_dir, batch_size, spec=spec, split=split, seed=seed, video_only=not fusion
    )

    def to_supervised(batch):
        label = batch["label"]
        weight = tf.cast(label >= 0, tf.float32)
        return _inputs(batch, fusion), tf.maximum(label, 0), weight

    return data.map(to_supervised, num_parallel_calls=tf.data.AUTOTUNE)


def _fit(
    model: keras.Model,
    data: tf.data.Dataset,
    steps: int,
    learning_rate: float,
    steps_per_epoch: int | None,
    verbose: int | str,
) -> keras.callbacks.History:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
    )
    per_epoch = max(1, min(steps_per_epoch or steps, steps))
    with warnings.catch_warnings():  # Keras: "shuffle=True ... ignored" for a tf.data input.
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")
        return model.fit(
            data, steps_per_epoch=per_epoch, epochs=max(1, steps // per_epoch), verbose=verbose
        )


def fit(
    model: keras.Model,
    data: tf.data.Dataset,
    steps: int,
    learning_rate: float = 1e-3,
    head_steps: int = 0,
    steps_per_epoch: int | None = None,
    verbose: int | str = "auto",
) -> keras.callbacks.History:
    """Trains ``model`` (from ``classifier``) with Adam and cross-entropy.

    Args:
        model: The classifier.
        data: ``(inputs, label, weight)`` batches.
        steps: Steps training every layer.
        learning_rate: Adam learning rate.
        head_steps: Steps first training only the classifier on frozen towers (in
            inference mode), so fine-tuning starts from a fitted head ("LP-FT").
        steps_per_epoch: Steps between Keras epoch logs.
        verbose: Keras ``fit`` verbosity.

    Returns:
        The history of the last phase.
    """
    trunks = [layer for layer in model.layers if layer.name.endswith("_trunk")]
    history = None
    if head_steps > 0:
        for trunk in trunks:
            trunk.trainable = False
        history = _fit(model, data, head_steps, learning_rate, steps_per_epoch, verbose)
        for trunk in trunks:
            trunk.trainable = True
    if steps > 0 or history is None:
        history = _fit(model, data, max(steps, 1), learning_rate, steps_per_epoch, verbose)
    return history


def video_accuracy(
    model: keras.Model,
    data_dir: str | Path,
    spec: pipeline.ClipSpec,
    split: str = "test",
    clips_per_video: int = 10,
    batch_size: int = 32,
    fusion: bool = False,
) -> dict[str, float]:
    """Video-level accuracy: softmax averaged over ``clips_per_video`` clips per video.

    Returns:
        ``accuracy`` (per video), ``clip_accuracy``, ``videos``.

    Raises:
        UserError: If the split holds no labelled video long enough for one clip.
    """
    predict = tf.function(lambda x: tf.nn.softmax(model(x, training=False)), reduce_retracing=True)
    data = pipeline.eval_dataset(
        data_dir,
        batch_size,
        spec=spec,
        split=split,
        clips_per_video=clips_per_video,
        video_only=not fusion,
    )
    sums: dict[int, np.ndarray] = {}
    labels: dict[int, int] = {}
    clip_hits, clip_count = 0, 0
    for batch in data:
        probs = predict(_inputs(batch, fusion)).numpy()
        for vid, label, p in zip(
            batch["video_id"].numpy(), batch["label"].numpy(), probs, strict=True
        ):
            if label < 0:
                continue
            sums[int(vid)] = sums.get(int(vid), 0.0) + p
            labels[int(vid)] = int(label)
            clip_hits += int(np.argmax(p) == label)
            clip_count += 1
    if not sums:
        raise UserError(
            f"split {split!r} of {data_dir} has no labelled video long enough for one clip; "
            "give longer videos or a shorter clip"
        )
    hits = [int(np.argmax(sums[v]) == labels[v]) for v in sums]
    return {
        "accuracy": float(np.mean(hits)),
        "clip_accuracy": clip_hits / clip_count,
        "videos": len(hits),
    }


def num_classes_of(data_dir: str | Path, splits: Sequence[str]) -> int:
    """Classes of a prepared dataset.

    Raises:
        UserError: If it has no labels.
    """
    records_io.check_splits(data_dir, splits)
    names = records_io.label_names(data_dir)
    if len(names) < 2:
        raise UserError(
            f"{data_dir} has {len(names)} label(s); fine-tuning needs at least 2: "
            "put each class's files in a folder named after it, or give a CSV "
            "with labels"
        )
    return len(names)


# -- one command's fine-tuning over official folds (avts-finetune) --------------------

TORCHVISION = "torchvision:"
"""``init`` prefix of a torchvision state_dict: ``torchvision:ARCH:FILE.pth``."""


class Recipe(Protocol):
    """A training recipe's towers and clip spec (``avts_tf.train.Recipe``)."""

    gin_files: Sequence[str]

    def towers(self, fps: float) -> tuple[keras.Model, keras.Model, pipeline.ClipSpec]:
        """Randomly initialized ``(video, audio, spec)`` for data at ``fps``."""

    def clip_spec(self) -> pipeline.ClipSpec:
        """The recipe's clip spec (defaults without a recipe)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the video tower starts and is fine-tuned (``avts-finetune``'s flags).

    Attributes:
        init: ``scratch``, an AVTS model_dir / ``video_tower.keras``, or
            ``torchvision:ARCH:FILE.pth``.
        arch: With ``scratch``: the checkpoint whose architecture is re-initialised.
        recipe: With ``scratch``: the training recipe that builds the towers; with
            torchvision: the recipe whose clip settings to use (``avts_tf.train.Recipe``,
            which registers what a recipe binds); None: no recipe.
        fusion: Add the audio tower (concatenated features).
        train_split: Training split.
        test_split: Test split.
        few_shot: Use only this many labelled training videos per class (None: all).
        layer: Tower layer fed to the classifier.
        steps: Training steps.
        batch_size: Clips per training batch.
        learning_rate: Adam learning rate.
        head_steps: Classifier-only steps on frozen towers first (LP-FT).
        dropout: Dropout before the classifier.
        clips_per_video: Test clips per video.
        seed: Random seed.
        save: Write the fine-tuned model here (``.keras``), or None.
        verbose: Keras fit verbosity.
    """

    init: str
    arch: str | None = None
    recipe: Recipe | None = None
    fusion: bool = False
    train_split: str = "train"
    test_split: str = "test"
    few_shot: int | None = None
    layer: str = "auto"
    steps: int = 1000
    batch_size: int = 16
    learning_rate: float = 1e-3
    head_steps: int = 0
    dropout: float = 0.5
    clips_per_video: int = 10
    seed: int = 0
    save: str | None = None
    verbose: int = 2

    @property
    def tower_run(self) -> str | None:
        """The run (or ``.keras`` file) whose towers ``init`` or ``arch`` names, if any."""
        if self.init.startswith(TORCHVISION):
            return None
        return self.init if self.init != "scratch" else self.arch


def _torchvision_towers(settings: Settings):
    """``(video, None, spec)`` for ``init`` ``torchvision:ARCH:FILE.pth``."""
    arch, _, path = settings.init[len(TORCHVISION) :].partition(":")
    if not arch or not path:
        raise UserError(
            f"--init {settings.init!r}: write torchvision:ARCH:FILE.pth, e.g. "
            f"torchvision:r2plus1d_18:r2plus1d_18-91a641e6.pth"
        )
    if settings.fusion or settings.arch:
        raise UserError(
            "--init torchvision:... has no audio tower and no --arch: drop --fusion / --arch"
        )
    spec = settings.recipe.clip_spec() if settings.recipe is not None else pipeline.ClipSpec()
    return checkpoint.torchvision_video_tower(arch, path, spec), None, spec


def initial_towers(settings: Settings, fps: float):
    """``(video, audio or None, spec)`` as ``settings.init`` starts them."""
    if settings.init.startswith(TORCHVISION):
        return _torchvision_towers(settings)
    source = settings.tower_run
    if source:
        video = checkpoint.load_tower(source, "video")
        audio = checkpoint.load_tower(source, "audio") if settings.fusion else None
        spec = checkpoint.clip_spec_for(source, video, audio)
        if settings.init == "scratch":
            video = checkpoint.fresh_copy(video)
            audio = checkpoint.fresh_copy(audio) if audio is not None else None
        return video, audio, spec
    if settings.recipe is None or not settings.recipe.gin_files:
        raise UserError("--init scratch needs --arch CHECKPOINT or --gin_file RECIPE")
    video, audio, spec = settings.recipe.towers(fps)
    return video, (audio if settings.fusion else None), spec


def run_fold(settings: Settings, data: Path, stack: contextlib.ExitStack) -> dict:
    """Fine-tunes on ``data``'s training split; :func:`video_accuracy` on its test split."""
    keras.utils.set_random_seed(settings.seed)
    fps = Manifest.read(data).fps
    video, audio, spec = initial_towers(settings, fps)
    features.check_sample_rate(data, spec.log_mel)
    if audio is not None:
        check_audio_shape(audio, spec, fps)
    num_classes = num_classes_of(data, [settings.train_split, settings.test_split])
    train_data = data
    if settings.few_shot:
        subset = stack.enter_context(tempfile.TemporaryDirectory(prefix="avts_few_shot_"))
        train_data = records_io.few_shot_subset(
            data, subset, settings.few_shot, settings.train_split, settings.seed
        )
    model = classifier(video, num_classes, audio, settings.layer, settings.dropout)
    clips = train_clips(
        train_data, spec, settings.batch_size, settings.train_split, settings.fusion, settings.seed
    )
    fit(
        model,
        clips,
        settings.steps,
        settings.learning_rate,
        settings.head_steps,
        steps_per_epoch=100,
        verbose=settings.verbose,
    )
    result = video_accuracy(
        model, data, spec, settings.test_split, settings.clips_per_video, fusion=settings.fusion
    )
    if settings.save:
        portable.portable_tower(model).save(settings.save)  # Stock layers: load without avts_tf.
    return result


def run_folds(
    settings: Settings,
    source: DataSource,
    folds: Sequence[int],
    on_fold: Callable[[int, dict], None] | None = None,
) -> list[dict]:
    """:func:`run_fold` on each official split of raw UCF101/HMDB51 (or the one dataset).

    Raw media is prepared with every video, sound or not, unless ``settings.fusion`` needs
    the audio; a folder of labelled videos gets a held-out split ``test`` per label.

    Args:
        settings: How to fine-tune.
        source: The data; with several ``folds``, raw media (each fold is prepared into
            ``<prepared_dir>/fold<k>`` where a prepared_dir is given).
        folds: Official splits to run.
        on_fold: Called with each fold and its result as it finishes.

    Returns:
        ``{"fold", **result}`` per fold.

    Raises:
        UserError: Several folds of an already prepared folder, or unusable data.
    """
    if len(folds) > 1 and records_io.is_prepared(source.data):
        raise UserError("--folds needs raw UCF101/HMDB51 input; a prepared folder holds one split")
    results = []
    for fold in folds:
        with contextlib.ExitStack() as stack:
            prepared_dir = source.prepared_dir
            if prepared_dir and len(folds) > 1:
                prepared_dir = f"{prepared_dir}/fold{fold}"
            data = prepared.prepared_data(  # Videos without sound count unless audio is fused.
                dataclasses.replace(source, fold=fold, prepared_dir=prepared_dir),
                stack,
                video_only=not settings.fusion,
                test_fraction=sources.DEFAULT_TEST_FRACTION,
            )
            result = run_fold(settings, data, stack)
        results.append({"fold": fold, **result})
        if on_fold is not None:
            on_fold(fold, result)
    return results
