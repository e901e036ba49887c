"""run.json: written by a real tiny train.run, read back exactly, used to rebuild the run."""

from __future__ import annotations

import functools
import json
import shutil

import gin
import keras
import numpy as np
import pytest
import tiny
from checks import assert_one_error_line
from eval_helpers import run_in_process

from avts_tf import config, train
from avts_tf.backbones.video_resnet import mc3_18
from avts_tf.errors import UserError
from avts_tf.evaluation import checkpoint
from avts_tf.run_description import FORMAT_VERSION, RunDescription, Tower
from avts_tf.tasks.sync.objectives import ContrastiveSync

TOWER_ARGS = {"width": 4, "depths": [1, 1, 1, 1], "embedding_dim": 8}


@pytest.fixture(scope="module")
def trained(tiny_prepared, tmp_path_factory):
    """A model_dir of a 2-step train.run from gin, with registered towers and samplers."""
    model_dir = tmp_path_factory.mktemp("described")
    gin.clear_config()
    config.parse_gin(
        [],
        [
            *tiny.SPEC_GIN.strip().splitlines(),
            "train.run.dataset = @data.prepared_dataset()",
            f"data.prepared_dataset.data_dir = '{tiny_prepared}'",
            "train.Model.video_tower = @backbones.mc3_18",
            "backbones.mc3_18.width = 4",
            "backbones.mc3_18.depths = (1, 1, 1, 1)",
            "backbones.mc3_18.embedding_dim = 8",
            "train.Model.audio_tower = @video/backbones.avts_audio_vgg",  # scoped: still read
            "video/backbones.avts_audio_vgg.width = 4",
            "backbones.avts_audio_vgg.depths = (1, 1, 1, 1)",
            "backbones.avts_audio_vgg.embedding_dim = 8",
            "train.Model.objective = @objectives.contrastive",
            "objectives.contrastive.margin = 0.8",
            "objectives.contrastive.negatives = @samplers.negative_samplers()",
            "samplers.negative_samplers.super_hard_min_shift_s = 0.3",
            "train.Trainer.batch_size = 4",
            "train.Trainer.train_steps = 2",
            "train.Trainer.steps_per_epoch = 2",
            "train.Trainer.seed = 3",
            "train.Evaluation.batch_size = 4",
            "train.Evaluation.clips_per_video = 2",
            "train.Runtime.verbose = 0",
        ],
        finalize=False,
    )
    try:
        train.run(model_dir)
    finally:
        gin.clear_config()
    return model_dir


def test_run_json_describes_the_run(trained, tiny_prepared):
    run = RunDescription.read(trained)
    assert run.format_version == FORMAT_VERSION == 1
    assert run.clip_spec == tiny.SPEC
    assert run.fps == 8.0
    assert run.dataset == str(tiny_prepared)
    assert (run.train_split, run.eval_split) == ("train", "test")
    assert (run.eval_batch_size, run.eval_clips_per_video) == (4, 2)
    assert (run.batch_size, run.train_steps, run.seed, run.precision) == (4, 2, 3, "float32")
    assert run.headline == "sync_accuracy"
    assert run.video_tower == Tower(
        "mc3_18", TOWER_ARGS, (4, 32, 32, 3), "avts_tf.backbones.video_resnet.mc3_18"
    )
    assert run.audio_tower == Tower(
        "avts_audio_vgg", TOWER_ARGS, (24, 16, 1), "avts_tf.backbones.audio.avts_audio_vgg"
    )
    # The task as the trainer built it, gin bindings included, and back.
    task = run.build_task()
    assert type(task) is ContrastiveSync
    assert (task.margin, task.threshold, task.eval_kinds) == (
        0.8,
        0.4,
        ("easy", "hard", "super_hard"),
    )
    assert task.negatives["super_hard"].min_shift_s == 0.3
    assert keras.saving.serialize_keras_object(task) == run.task
    assert RunDescription.from_json(run.to_json()) == run
    text = json.loads((trained / "run.json").read_text())
    assert text["clip_spec"]["log_mel"]["mel_bins"] == 16
    assert text["task"]["class_name"] == "ContrastiveSync"


def test_towers_rebuilt_from_run_json_embed_as_the_saved_ones(trained, tmp_path):
    # A copy without the .keras files: a run still training (mid-training checkpoint).
    running = tmp_path / "running"
    shutil.copytree(trained, running, ignore=shutil.ignore_patterns("*.keras"))
    model = checkpoint.rebuild_run_model(running)
    assert type(model.objective) is ContrastiveSync and model.objective.margin == 0.8
    rng = np.random.default_rng(0)
    for which, shape in (("video", (3, 4, 32, 32, 3)), ("audio", (3, 24, 16, 1))):
        saved = keras.saving.load_model(trained / f"{which}_tower.keras")
        inputs = rng.uniform(size=shape).astype(np.float32)
        expected = saved(inputs, training=False).numpy()
        np.testing.assert_array_equal(
            getattr(model, f"{which}_tower")(inputs, training=False).numpy(), expected
        )
        np.testing.assert_array_equal(
            checkpoint.load_tower(running, which)(inputs, training=False).numpy(), expected
        )
    assert checkpoint.run_clip_spec(running) == tiny.SPEC


def test_other_format_version_is_refused(trained, tmp_path):
    data = json.loads((trained / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**data, "format_version": 2}))
    with pytest.raises(UserError, match="has format_version 2; this avts_tf reads version 1"):
        RunDescription.read(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"format_version": 1, "fps": 8.0}))
    with pytest.raises(UserError, match="is not a run description"):
        RunDescription.read(tmp_path)


def test_run_without_run_json_is_a_one_line_error(trained, tiny_prepared, tmp_path):
    # A folder that is no run at all (the footage): the error says so, rather than asking to
    # re-run its training.
    footage = tmp_path / "footage"
    footage.mkdir()
    (footage / "a.mp4").write_bytes(b"video")
    with pytest.raises(UserError) as error:
        RunDescription.read(footage)
    assert str(error.value) == (
        f"{footage} is not a training run's model_dir (no run.json, config.gin or "
        "checkpoints); give the --model_dir of an avts-train run"
    )
    # A run folder from before run.json: operative config and checkpoints only.
    old = tmp_path / "old"
    shutil.copytree(trained, old, ignore=shutil.ignore_patterns("*.keras", "run.json"))
    with pytest.raises(UserError) as error:
        RunDescription.read(old)
    assert str(error.value) == (
        f"{old} has no run.json (train.run writes it since avts_tf 0.1, format 1); "
        "re-run its training command, which resumes from the checkpoints and writes it, "
        "or pass the .keras tower files"
    )
    shutil.rmtree(old)
    shutil.copytree(trained, old, ignore=shutil.ignore_patterns("*.keras", "run.json"))
    with pytest.raises(UserError, match="has no run.json"):
        checkpoint.load_tower(old, "video")
    with pytest.raises(UserError, match="has no run.json"):
        checkpoint.clip_spec_for(old)
    code, _, err = run_in_process(
        "eval_sync", "--model_dir", str(old), "--data", str(tiny_prepared)
    )
    assert_one_error_line(code, err, f"{old} has no run.json", "re-run its training command")


def test_towers_are_described_by_their_factory():
    shape = (4, 32, 32, 3)
    partial = functools.partial(mc3_18, width=4, depths=(1, 1, 1, 1))
    assert Tower.of_factory(partial, shape) == Tower(
        "mc3_18",
        {"width": 4, "depths": [1, 1, 1, 1]},
        shape,
        "avts_tf.backbones.video_resnet.mc3_18",
    )
    # A plain Python call of the registered function gets no gin bindings.
    gin.parse_config("import avts_tf.backbones\nbackbones.mc3_18.width = 16")
    assert Tower.of_factory(mc3_18, shape).kwargs == {}
    # Not registered, or positional arguments: described, not rebuildable.
    unregistered = Tower.of_factory(_my_tower, shape)
    assert (unregistered.name, unregistered.kwargs) == (None, None)
    assert unregistered.factory == f"{__name__}._my_tower"
    assert Tower.of_factory(functools.partial(mc3_18, shape), shape).kwargs is None
    with pytest.raises(UserError, match="_my_tower is not a registered BACKBONES factory"):
        unregistered.build()


def _my_tower(input_shape):
    return tiny.tiny_video_tower(input_shape)
