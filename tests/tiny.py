"""The tiny setting the tests share: clip spec, its gin text, towers, the tiny run's config.

Test modules and the scripts they run in subprocesses import this module (``import tiny``);
``conftest.py`` builds its fixtures from it, and is never imported by name.
"""

from __future__ import annotations

from pathlib import Path

import keras

from avts_tf.data.audio_features import LogMelSpec
from avts_tf.data.pipeline import ClipSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
FPS = 8.0  # The frame rate ``tiny_prepared`` is ingested at.

# 4 frames at 8 fps = 0.5 s of audio = 24 log-mel frames of 16 bands.
SPEC = ClipSpec(
    num_frames=4, crop_size=32, log_mel=LogMelSpec(mel_bins=16, window_s=0.04, hop_s=0.02)
)
VIDEO_SHAPE = SPEC.video_shape()  # (4, 32, 32, 3)
AUDIO_SHAPE = SPEC.audio_shape(FPS)  # (24, 16, 1)

# ``SPEC`` as ``train.Model`` reads it from gin.
SPEC_GIN = f"""
train.Model.clip_spec = @data.ClipSpec()
data.ClipSpec.num_frames = {SPEC.num_frames}
data.ClipSpec.crop_size = {SPEC.crop_size}
data.ClipSpec.log_mel = @data.LogMelSpec()
data.LogMelSpec.mel_bins = {SPEC.log_mel.mel_bins}
data.LogMelSpec.hop_s = {SPEC.log_mel.hop_s}
data.LogMelSpec.window_s = {SPEC.log_mel.window_s}
"""

# The operative config of the ``tiny_run`` fixture's model_dir.
RUN_GIN = (
    SPEC_GIN
    + """\
train.Model.objective = @objectives.contrastive
objectives.contrastive.margin = 1.0
"""
)


def describe_run(model_dir: Path, dataset: Path, task=None) -> None:
    """Writes the ``run.json`` of a tiny run: ``SPEC``, the tiny towers, ``RUN_GIN``'s task.

    ``task`` replaces the task (default ``ContrastiveSync(margin=1.0)``).
    """
    from avts_tf.run_description import RunDescription
    from avts_tf.tasks.sync.objectives import ContrastiveSync

    RunDescription.of_run(
        video_factory=tiny_video_tower,
        audio_factory=tiny_audio_tower,
        task=task or ContrastiveSync(margin=1.0),
        clip_spec=SPEC,
        fps=FPS,
        dataset=dataset,
        train_split="train",
        eval_split="test",
        eval_batch_size=32,
        eval_clips_per_video=4,
        precision="float32",
        seed=0,
        batch_size=16,
        train_steps=1000,
    ).write(model_dir)


def write_finished_run(model_dir: Path, dataset: Path, model) -> None:
    """Writes ``model`` (an ``AVTSModel``) as ``train.run`` leaves a finished run: portable
    ``.keras`` towers, a checkpoint of its last batch (6) with its index, and run.json."""
    import json

    from avts_tf import portable

    portable.save_tower(model.video_tower, model_dir / "video_tower.keras")
    portable.save_tower(model.audio_tower, model_dir / "audio_tower.keras")
    (model_dir / "checkpoints").mkdir()
    model.save_weights(model_dir / "checkpoints" / "ckpt-000000006.weights.h5")
    (model_dir / "checkpoints" / "checkpoint.json").write_text(
        json.dumps(
            {
                "checkpoints": [
                    {
                        "batches": 6,
                        "step": 6,
                        "curriculum_stage": 0,
                        "file": "ckpt-000000006.weights.h5",
                    }
                ]
            }
        )
    )
    describe_run(model_dir, dataset, task=model.objective)


def tiny_video_tower(input_shape=VIDEO_SHAPE, embedding_dim: int = 8, batch_norm=False):
    """A small functional video tower with a named input.

    ``batch_norm``: False (none), True, or ``"sync"`` (statistics over all replicas).
    """
    inputs = keras.Input(input_shape, name="video")
    x = keras.layers.Conv3D(4, 3, strides=(1, 2, 2), activation="relu")(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization(synchronized=batch_norm == "sync")(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    outputs = keras.layers.Dense(embedding_dim)(x)
    return keras.Model(inputs, outputs, name="tiny_video")


def tiny_audio_tower(input_shape=AUDIO_SHAPE, embedding_dim: int = 8, batch_norm=False):
    """A small functional audio tower with a named input (``batch_norm`` as the video's)."""
    inputs = keras.Input(input_shape, name="audio")
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization(synchronized=batch_norm == "sync")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(embedding_dim)(x)
    return keras.Model(inputs, outputs, name="tiny_audio")


def distributed_towers(kind: str) -> tuple[keras.Model, keras.Model]:
    """The towers the replica-equality tests train: ``"sync_bn"`` (tiny towers with
    synchronized BatchNorm) or ``"replica_bn"`` (the real ``mc3_18`` and ``avts_audio_vgg``
    at width 4, per-replica BatchNorm)."""
    if kind == "sync_bn":
        return tiny_video_tower(batch_norm="sync"), tiny_audio_tower(batch_norm="sync")
    from avts_tf.registry import BACKBONES

    return (
        BACKBONES.build("mc3_18", input_shape=(4, 32, 32, 3), width=4, embedding_dim=8),
        BACKBONES.build("avts_audio_vgg", input_shape=(24, 16, 1), width=4, embedding_dim=8),
    )


def grouped(**settings):
    """``train.run``'s keyword arguments from flat ones, for tests that vary one setting.

    A field of ``train.Model``, ``train.Trainer`` or ``train.Runtime`` (``batch_size`` is
    the trainer's) goes into its group, replacing that field of a group given whole;
    the others (``dataset``, ``evaluation``, ``callbacks``, ...) pass through.
    """
    import dataclasses

    from avts_tf import train

    for name, group in (
        ("model", train.Model),
        ("trainer", train.Trainer),
        ("runtime", train.Runtime),
    ):
        names = {field.name for field in dataclasses.fields(group)}
        mine = {key: settings.pop(key) for key in list(settings) if key in names}
        if mine:
            given = settings.get(name)
            settings[name] = dataclasses.replace(given, **mine) if given else group(**mine)
    return settings


def train_tiny(model_dir, data_dir, **overrides):
    """``train.run`` of the tiny towers (BatchNorm in the video one) on ``data_dir``.

    Defaults: contrastive sync task, batch 4, 6 batches in epochs of 3, evaluation of one
    clip per video, quiet, deterministic ops; ``overrides`` replace any argument or any
    field of a group (``grouped``).
    """
    import functools

    from avts_tf import train
    from avts_tf.tasks.sync.objectives import ContrastiveSync

    params = dict(
        dataset=str(data_dir),
        video_tower=functools.partial(tiny_video_tower, batch_norm=True),
        audio_tower=tiny_audio_tower,
        clip_spec=SPEC,
        batch_size=4,
        train_steps=6,
        steps_per_epoch=3,
        objective=ContrastiveSync,
        evaluation=train.Evaluation(batch_size=4, clips_per_video=1),
        runtime=train.Runtime(verbose=0, deterministic=True),
    )
    params.update(overrides)
    return train.run(model_dir, **grouped(**params))


def tower_weights(model_dir: Path) -> list:
    """The saved towers' weights of a run, video then audio, as NumPy arrays."""
    import numpy as np

    return [
        np.asarray(w)
        for name in ("video_tower.keras", "audio_tower.keras")
        for w in keras.saving.load_model(Path(model_dir) / name).weights
    ]
