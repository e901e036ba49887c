"""A user's mistakes in a training run: refused up front, one line, nothing lost or written."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from checks import error_line_of
from tiny import REPO_ROOT, SPEC, SPEC_GIN, tiny_audio_tower, train_tiny

from avts_tf import config, run_checks, train
from avts_tf.backbones.audio import avts_audio_vgg
from avts_tf.backbones.video_resnet import mc3_18
from avts_tf.data import pipeline
from avts_tf.errors import UserError, without_gin_note
from avts_tf.tasks.temporal.task import TemporalContrastive
from avts_tf.tasks.temporal.views import ViewSpec


def _run(model_dir, data_dir, **kwargs):
    return train_tiny(
        model_dir,
        data_dir,
        **{"train_steps": 2, "steps_per_epoch": 2, "runtime": train.Runtime(verbose=0), **kwargs},
    )


@pytest.mark.parametrize(
    ("binding", "expected"),
    [
        (
            "train.Model.video_tower = @backbones.mc3_19",
            "unknown gin name backbones.mc3_19 (--gin_param 'train.Model.video_tower = "
            "@backbones.mc3_19'); did you mean "
            "backbones.mc3_18 or backbones.mc2_18 or backbones.r3d_18? valid: "
            "backbones.audio_resnet18, backbones.avts_audio_vgg, backbones.i3d, backbones.mc2_18, "
            "backbones.mc3_18, backbones.r2plus1d_18, backbones.r3d_18",
        ),
        (
            "train.run.bach_size = 4",
            "train.run has no parameter bach_size (--gin_param 'train.run.bach_size = 4'); did you "
            "mean train.Trainer.batch_size? valid: dataset, model, trainer, evaluation, runtime,",
        ),
        (
            "train.Model.objective = @objectives.temporall",
            "unknown gin name objectives.temporall (--gin_param 'train.Model.objective = "
            "@objectives.temporall'); did you mean "
            "objectives.temporal",
        ),
        # A task is a Keras layer taking **kwargs: gin lets any name through, so the check is
        # ours, before the model_dir is written (Keras would refuse it in a traceback).
        (
            "objectives.temporal.video_video_weigth = 0.1",
            "objectives.temporal has no parameter video_video_weigth (--gin_param "
            "'objectives.temporal.video_video_weigth = 0.1'); did you mean "
            "video_video_weight? valid: "
            "view_spec, projection_dim,",
        ),
        ("samplers.hardd.max_shift_s = 1.0", "did you mean samplers.hard"),
        ("curricula.linear_rampp.start = 1", "did you mean curricula.linear_ramp"),
        # A bare word is not a value: named as such, not "malformed node or string ...
        # <ast.Name object>".
        (
            "train.Trainer.train_steps = abc",
            "abc is not a gin value (--gin_param 'train.Trainer.train_steps = abc'); write a "
            "number, a "
            "quoted string ('abc'),",
        ),
        (
            "train.Trainer.train_steps = [1,",
            "could not parse the gin configuration (--gin_param 'train.Trainer.train_steps = "
            "[1,'): a "
            "bracket or quote is not closed; check the binding's syntax",
        ),
    ],
)
def test_gin_mistakes_name_the_valid_choices(binding, expected):
    with pytest.raises(UserError) as err:  # the second --gin_param is named, not the first
        config.parse_gin(["quickstart"], ["train.Trainer.seed = 1", binding])
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_recipe_lists_the_builtin_recipes():
    with pytest.raises(UserError) as err:
        config.parse_gin(["quickstrat"])
    message = str(err.value)
    assert message.startswith("gin file quickstrat not found; did you mean quickstart, ")
    assert "mc3_curriculum, offset_quickstart, quickstart, r2plus1d_curriculum" in message


def test_recipes_resolve_by_name_and_path_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no gin/ folder here: the packaged recipes are found
    config.parse_gin(["tssl_quickstart"], finalize=False)  # includes gin/quickstart.gin
    import gin

    assert gin.query_parameter("data.synthetic_dataset.duration_s") == 12.0
    assert gin.query_parameter("train.Trainer.batch_size") == 8
    gin.clear_config()
    config.parse_gin(["gin/quickstart.gin"], finalize=False)
    assert gin.query_parameter("train.Trainer.batch_size") == 16
    gin.clear_config()
    own = tmp_path / "gin" / "quickstart.gin"  # a user's own file of that path wins
    own.parent.mkdir()
    own.write_text("include 'gin/mc3_curriculum.gin'\ntrain.Trainer.batch_size = 3\n")
    config.parse_gin(["gin/quickstart.gin"], finalize=False)
    assert gin.query_parameter("train.Trainer.batch_size") == 3
    assert gin.query_parameter("train.Model.video_tower").selector == "backbones.mc3_18"
    gin.clear_config()
    own.write_text("include 'gin/nothere.gin'\n")
    with pytest.raises(
        UserError,
        match=r"^gin include gin/nothere.gin not found; give a path "
        r"relative to the current folder or a built-in recipe",
    ):
        config.parse_gin(["gin/quickstart.gin"], finalize=False)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(batch_size=0), "train.Trainer.batch_size is 0; set it to a positive integer"),
        (dict(batch_size=-4), "train.Trainer.batch_size is -4; set it to a positive integer"),
        (dict(train_steps=-1), "train.Trainer.train_steps is -1; set it to a non-negative integer"),
        (
            dict(steps_per_epoch=0),
            "train.Trainer.steps_per_epoch is 0; set it to a positive integer",
        ),
        (
            dict(video_tower="mc3_18"),
            "train.Model.video_tower is 'mc3_18', not a factory; bind a registered one with "
            "@, e.g. "
            "train.Model.video_tower = @backbones.mc3_18",
        ),
        (
            dict(precision="fp16"),
            "train.Runtime.precision is 'fp16'; use one of float32, mixed_float16, mixed_bfloat16",
        ),
        # Values the task's constructor refuses: one line, before the model_dir is written.
        (
            dict(objective=functools.partial(TemporalContrastive, video_video_weight=-1)),
            "train.Model.objective cannot be built: video_video_weight must be a number >= 0, "
            "got -1; "
            "fix its "
            "binding in the recipe or --gin_param",
        ),
        (
            dict(objective=functools.partial(TemporalContrastive, control="shuffle")),
            "train.Model.objective cannot be built: Unknown control 'shuffle'; valid: none, "
            "permuted_labels, shuffled_frames, unrelated_audio; fix its binding",
        ),
        # Task settings refused before training, where they would fail (a ZeroDivisionError,
        # a gather from an empty queue, a Dense of 0 units) or train a head to maximise its loss.
        (
            dict(objective=functools.partial(TemporalContrastive, temperature=0)),
            "train.Model.objective cannot be built: temperature must be a number > 0, got 0; fix",
        ),
        (
            dict(objective=functools.partial(TemporalContrastive, queue_size=0)),
            "train.Model.objective cannot be built: queue_size must be an integer > 0, got 0; fix",
        ),
        (
            dict(objective=functools.partial(TemporalContrastive, projection_dim=0)),
            "train.Model.objective cannot be built: projection_dim must be an integer > 0, got 0;",
        ),
        (
            dict(objective=functools.partial(TemporalContrastive, loss_weights={"speed": -1})),
            "train.Model.objective cannot be built: loss_weights['speed'] must be a number >= "
            "0, got "
            "-1; fix",
        ),
        (
            dict(objective=functools.partial(TemporalContrastive, temperature=float("nan"))),
            "train.Model.objective cannot be built: temperature must be a number > 0, got nan; fix",
        ),
        (
            dict(objective=functools.partial(TemporalContrastive, temperature="0.1")),
            "train.Model.objective cannot be built: temperature must be a number > 0, got "
            "'0.1'; fix",
        ),
        # A control that pairs the two halves of a batch, on an odd batch: refused before the
        # model_dir is written, not left to tf.split's traceback in the first step.
        (
            dict(
                objective=functools.partial(TemporalContrastive, control="permuted_labels"),
                batch_size=3,
            ),
            "train.Trainer.batch_size 3 gives 3 example(s) per replica; the task "
            "TemporalContrastive "
            "needs a multiple of 2 on each replica (control 'permuted_labels' pairs the two halves "
            "of each batch); set train.Trainer.batch_size to a multiple of 2",
        ),
        # A head the towers' outputs cannot feed: built and refused before the model_dir is
        # written.
        (
            dict(audio_tower=functools.partial(tiny_audio_tower, embedding_dim=4)),
            "train.Model.objective cannot be built: The contrastive objective compares embeddings "
            "directly, but the video tower outputs 8 and the audio tower 4 features; give both "
            "towers the same embedding_dim; fix",
        ),
        # Values a tower factory refuses: one line, before the model_dir is written.
        (
            dict(video_tower=functools.partial(mc3_18, width=-4)),
            "train.Model.video_tower cannot be built: Invalid value for argument `filters`. "
            "Expected a "
            "strictly positive value. Received filters=-4; fix its binding in the recipe or "
            "--gin_param",
        ),
        (
            dict(video_tower=functools.partial(mc3_18, depths=(1, 1))),
            "train.Model.video_tower cannot be built: 4 conv types for 2 groups; fix its binding",
        ),
        (
            dict(audio_tower=functools.partial(avts_audio_vgg, embedding_dim=0)),
            "train.Model.audio_tower cannot be built: Received an invalid value for `units`, "
            "expected a "
            "positive integer. Received: units=0; fix its binding",
        ),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(
    tmp_path, tiny_prepared, kwargs, expected
):
    with pytest.raises(UserError) as err:
        _run(tmp_path / "run", tiny_prepared, **kwargs)
    assert str(err.value).splitlines()[0].startswith(expected)
    assert not (tmp_path / "run").exists()


def _edited_copy(tmp_path, tiny_prepared, edit):
    """A copy of the tiny dataset whose manifest ``edit`` changed in place."""
    data = tmp_path / "data"
    shutil.copytree(tiny_prepared, data)
    manifest = json.loads((data / "manifest.json").read_text())
    edit(manifest)
    (data / "manifest.json").write_text(json.dumps(manifest))
    return data


def _refusal(tmp_path, data) -> str:
    """The first line of the error a run on ``data`` is refused with; nothing is written."""
    with pytest.raises(UserError) as err:
        _run(tmp_path / "run", data)
    assert not (tmp_path / "run").exists()
    return str(err.value).splitlines()[0]


def _with_splits(tmp_path, tiny_prepared, keep):
    def keep_splits(manifest):
        manifest["written"] = [e for e in manifest["written"] if e["split"] in keep]
        manifest["splits"] = {k: v for k, v in manifest["splits"].items() if k in keep}

    return _edited_copy(tmp_path, tiny_prepared, keep_splits)


def test_a_dataset_without_a_test_split_is_refused_before_training(tmp_path, tiny_prepared):
    data = _with_splits(tmp_path, tiny_prepared, keep={"train"})
    assert _refusal(tmp_path, data) == (
        f"dataset {data} has no records in the evaluation split 'test' (splits with records: "
        "train (6)); re-prepare with a held-out split (avts-prepare --test_fraction) or bind "
        "train.Evaluation.split to one of those"
    )


def test_an_empty_dataset_is_refused(tmp_path, tiny_prepared):
    data = _with_splits(tmp_path, tiny_prepared, keep=set())
    with pytest.raises(
        UserError,
        match=r"no records in the train split 'train' \(splits with "
        r"records: none\)",
    ):
        _run(tmp_path / "run", data)
    with pytest.raises(UserError, match="dataset .*nowhere does not exist; prepare it first"):
        _run(tmp_path / "run", tmp_path / "nowhere")


def _with_entries(tmp_path, tiny_prepared, split, **fields):
    def set_fields(manifest):
        for entry in manifest["written"]:
            if entry["split"] == split:
                entry.update(fields)

    return _edited_copy(tmp_path, tiny_prepared, set_fields)


def test_a_split_without_one_clip_window_is_refused_before_training(tmp_path, tiny_prepared):
    """Audio-only records (an audio collection given to train) or clips shorter than the
    window are skipped by the pipeline: training ran on an empty stream and exported
    untrained towers with `eval: {}`."""
    data = _with_entries(tmp_path, tiny_prepared, "train", num_frames=0, duration=0.3)
    assert _refusal(tmp_path, data) == (
        f"no record of the train split 'train' of {data} holds one 0.50 s clip window of "
        "video and audio (6 record(s): 6 without video); prepare longer videos with an audio "
        "track, or shorten the clip (data.ClipSpec.num_frames)"
    )
    with pytest.raises(
        UserError,
        match=r"^no record of the train split 'train' of .*"
        r"\(6 record\(s\): 6 without video\)",
    ):
        pipeline.train_dataset(data, 2, spec=SPEC)  # A user's own model.fit script.
    shutil.rmtree(data)
    data = _with_entries(tmp_path, tiny_prepared, "train", num_samples=0)  # Silent videos.
    with pytest.raises(UserError, match=r"\(6 record\(s\): 6 without audio\); prepare"):
        _run(tmp_path / "run", data)
    pipeline.train_dataset(data, 2, spec=SPEC, video_only=True)  # A video tower alone: fine.
    assert pipeline.count_too_short(data, "train", SPEC) == 6  # What the aligned reader drops.
    assert pipeline.count_too_short(data, "train", SPEC, video_only=True) == 0
    shutil.rmtree(data)
    data = _with_entries(tmp_path, tiny_prepared, "test", duration=0.25)
    with pytest.raises(
        UserError,
        match=r"of the evaluation split 'test' .* \(2 record\(s\): "
        r"2 shorter\)",
    ):
        _run(tmp_path / "run", data)


def test_records_too_short_for_the_slowest_view_are_refused_before_training(
    tmp_path, tiny_prepared
):
    """The temporal task with only slow speeds (``speeds=(8,)``: 4 s views of a 0.5 s clip)
    on 3 s videos is checked against its slowest view, not only 1x: refused before the
    model_dir is written, not left to tf.data's assertion "record holds none of the view
    speeds" in training."""
    slow = functools.partial(TemporalContrastive, view_spec=ViewSpec(speeds=(8,)))
    with pytest.raises(UserError) as err:
        _run(tmp_path / "run", tiny_prepared, objective=slow, batch_size=2)
    assert str(err.value).splitlines()[0] == (
        f"no record of the train split 'train' of {tiny_prepared} holds one 4.00 s clip window "
        "of video and audio (the task's slowest view: 8x a 0.50 s clip) (6 record(s): 6 "
        "shorter); prepare longer videos with an audio track, or shorten the clip "
        "(data.ClipSpec.num_frames) or include a faster view speed"
    )
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match=r"holds one 4.00 s clip window .* 6 shorter"):
        pipeline.train_dataset(tiny_prepared, 2, task=slow(), spec=SPEC)  # A user's own fit.
    # 2 s views fit: the same records stream (each holds the slowest view).
    fits = TemporalContrastive(view_spec=ViewSpec(speeds=(4,)))
    batch = next(iter(pipeline.train_dataset(tiny_prepared, 2, task=fits, spec=SPEC)))
    np.testing.assert_array_equal(batch["speed"], np.zeros([2, 2]))


def test_a_model_dir_that_is_a_file_is_refused_and_kept(tmp_path, tiny_prepared):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(UserError, match="model_dir .*notes.txt is a file, not a folder"):
        _run(target, tiny_prepared)
    assert target.read_text() == "mine"


def test_a_folder_of_other_files_is_refused_as_model_dir_and_left_as_it_was(
    tmp_path, tiny_prepared
):
    """``--model_dir`` naming footage or a prepared dataset: refused, nothing added.

    A run written there would put its checkpoints, towers and eval.json beside the videos,
    replacing any of the same name; the folder is left as it was.
    """
    footage = tmp_path / "footage"
    footage.mkdir()
    for name in ("a.mp4", "b.mp4", "eval.json", "notes.txt"):
        (footage / name).write_text(name)
    (footage / ".DS_Store").write_text("hidden")
    before = sorted(p.name for p in footage.iterdir())
    with pytest.raises(UserError) as err:
        _run(footage, tiny_prepared)
    assert without_gin_note(str(err.value)) == (
        f"model_dir {footage} holds files that are not a training run (a.mp4, b.mp4, eval.json "
        "and 1 more); give an empty or new --model_dir (or --overwrite to write the run beside "
        "them)"
    )
    assert sorted(p.name for p in footage.iterdir()) == before
    assert (footage / "eval.json").read_text() == "eval.json"
    with pytest.raises(
        UserError,
        match="holds files that are not a training run "
        r"\(manifest.json, test-00000",
    ):
        _run(tiny_prepared, tiny_prepared)  # the dataset's own folder
    only_hidden = tmp_path / "hidden"
    only_hidden.mkdir()
    (only_hidden / ".DS_Store").write_text("hidden")
    run_checks.check_model_dir_holds_no_other_files(only_hidden, overwrite=False)
    run_checks.check_model_dir_holds_no_other_files(footage, overwrite=True)


def test_a_run_of_another_configuration_is_refused_unless_overwrite(tmp_path):
    run = tmp_path / "run"
    old = "mc3_18.width = 16\nTrainer.batch_size = 16\nTrainer.train_steps = 100\n"
    run_checks.prepare_model_dir(run, overwrite=False, config_text=lambda: old)
    (run / "video_tower.keras").write_bytes(b"old towers")
    (run / "my_notes.txt").write_text("mine")
    # More steps, same model: a resumption, not a different run.
    run_checks.prepare_model_dir(run, False, config_text=lambda: old.replace("100", "200"))
    new = "mc3_18.width = 8\nTrainer.batch_size = 16\nTrainer.train_steps = 100\nTrainer.seed = 1\n"
    with pytest.raises(UserError) as err:
        run_checks.prepare_model_dir(run, overwrite=False, config_text=lambda: new)
    assert str(err.value) == (
        f"model_dir {run} holds a run of another configuration (Trainer.seed: (unset) -> 1; "
        "mc3_18.width: 16 -> 8); re-run with --overwrite to replace it, or give a new "
        "--model_dir"
    )
    assert (run / "video_tower.keras").read_bytes() == b"old towers"
    run_checks.prepare_model_dir(run, overwrite=True, config_text=lambda: new)
    assert not (run / "video_tower.keras").exists()
    assert (run / "my_notes.txt").read_text() == "mine"  # not ours: kept
    assert (run / "config.gin").read_text() == new


def test_a_run_saved_with_train_run_bindings_resumes(tmp_path):
    """A config.gin written when train.run took the settings itself reads under the new
    names: the same run resumes, a changed one is refused naming the new binding."""
    run = tmp_path / "run"
    saved = "run.batch_size = 16\nrun.train_steps = 100\nrun.precision = 'float32'\n"
    run_checks.prepare_model_dir(run, overwrite=False, config_text=lambda: saved)
    (run / "video_tower.keras").write_bytes(b"old towers")
    now = "Trainer.batch_size = 16\nTrainer.train_steps = 200\nRuntime.precision = 'float32'\n"
    run_checks.prepare_model_dir(run, overwrite=False, config_text=lambda: now)
    (run / "config.gin").write_text(saved)
    with pytest.raises(UserError, match=r"\(Trainer.batch_size: 16 -> 8\)"):
        run_checks.prepare_model_dir(
            run, overwrite=False, config_text=lambda: now.replace("16", "8")
        )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("train.run.batch_size = 16", "train.Trainer.batch_size = 16"),
        ("train.run.precision = 'mixed_bfloat16'", "train.Runtime.precision = 'mixed_bfloat16'"),
        (
            "train.run.video_tower = @backbones.mc3_18",
            "train.Model.video_tower = @backbones.mc3_18",
        ),
        ("run.train_steps = 100", "Trainer.train_steps = 100"),
    ],
)
def test_a_moved_train_run_binding_names_its_new_binding(tmp_path, old, new):
    recipe = tmp_path / "old.gin"
    recipe.write_text(f"include 'gin/quickstart.gin'\n{old}\n")
    name = old.partition(" =")[0]
    with pytest.raises(UserError) as err:
        config.parse_gin([str(recipe)])
    assert str(err.value) == (
        f'{name} (file "{recipe}", line 2) is now {new.partition(" =")[0]}; write {new}'
    )
    with pytest.raises(UserError) as err:
        config.parse_gin(["quickstart"], [old.replace(" ", "")])
    assert str(err.value) == (
        f"{name} (--gin_param {old.replace(' ', '')!r}) is now "
        f"{new.partition(' =')[0]}; write {new}"
    )


def test_the_train_tool_names_the_new_binding_of_a_moved_one(tmp_path):
    recipe = tmp_path / "old.gin"
    recipe.write_text("include 'gin/quickstart.gin'\ntrain.run.batch_size = 16\n")
    line = error_line_of(_train_cli(f"--gin_file={recipe}", cwd=tmp_path))
    assert line == (
        f'error: train.run.batch_size (file "{recipe}", line 2) is now '
        "train.Trainer.batch_size; write train.Trainer.batch_size = 16"
    )
    assert not (tmp_path / "runs").exists()


def test_train_steps_zero_exports_untrained_towers(tmp_path, tiny_prepared):
    results = _run(tmp_path / "run", tiny_prepared, train_steps=0)
    assert (tmp_path / "run" / "video_tower.keras").is_file()
    assert "sync_accuracy" in results


def _train_cli(*args, cwd=REPO_ROOT):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )


def test_train_tool_mistakes_end_in_one_line_exit_2(tmp_path):
    line = error_line_of(_train_cli("--gin_file=quickstrat", cwd=tmp_path))
    assert line.startswith("error: gin file quickstrat not found; did you mean quickstart")
    line = error_line_of(
        _train_cli("--gin_file=quickstart", "--gin_param=train.run.bach_size=4", cwd=tmp_path)
    )
    assert line.startswith("error: train.run has no parameter bach_size")
    line = error_line_of(_train_cli("--gin_file=quickstart", "--bogus", cwd=tmp_path))
    assert line.startswith("error: Unknown command line flag 'bogus'")
    assert not (tmp_path / "runs").exists()


def test_a_refused_clip_setting_is_one_line_before_anything_is_written(tmp_path, tiny_prepared):
    """Gin builds ``@data.ClipSpec()`` and ``@data.LogMelSpec()`` before ``train.run``
    begins: a value a spec refuses (here a zero hop) is one error line, not a traceback."""
    recipe = tmp_path / "tiny.gin"
    recipe.write_text(
        SPEC_GIN + f"include 'gin/quickstart.gin'\ntrain.run.dataset = '{tiny_prepared}'\n"
    )
    line = error_line_of(
        _train_cli(
            f"--gin_file={recipe}",
            f"--model_dir={tmp_path / 'run'}",
            "--gin_param=data.LogMelSpec.hop_s=0",
            cwd=tmp_path,
        )
    )
    assert line == (
        "error: data.LogMelSpec.hop_s must be a number > 0, got 0; fix the binding "
        "of LogMelSpec in the recipe or --gin_param"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_tool_refuses_to_resume_another_configuration(tmp_path, tiny_prepared):
    recipe = tmp_path / "tiny.gin"
    recipe.write_text(
        SPEC_GIN
        + f"""
include 'gin/quickstart.gin'
train.run.dataset = '{tiny_prepared}'
train.Trainer.batch_size = 4
train.Trainer.train_steps = 0
train.Evaluation.clips_per_video = 1
train.Runtime.verbose = 0
"""
    )
    run = tmp_path / "run"
    first = _train_cli(f"--gin_file={recipe}", f"--model_dir={run}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    towers = (run / "video_tower.keras").read_bytes()
    width = "--gin_param=backbones.mc3_18.width=8"
    line = error_line_of(
        _train_cli(f"--gin_file={recipe}", width, f"--model_dir={run}", cwd=tmp_path)
    )
    assert line == (
        f"error: model_dir {run} holds a run of another configuration "
        "(mc3_18.width: 16 -> 8); re-run with --overwrite to replace it, or give "
        "a new --model_dir"
    )
    assert (run / "video_tower.keras").read_bytes() == towers
    again = _train_cli(
        f"--gin_file={recipe}", width, f"--model_dir={run}", "--overwrite", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "mc3_18.width = 8" in (run / "config.gin").read_text()


def test_a_model_dir_another_run_is_writing_is_refused_untouched(tmp_path, tiny_prepared):
    """A job restarted while its first instance still runs, or the same command in two
    terminals: both trained into one folder, writing the same checkpoints and towers."""
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    with open(run / run_checks.LOCK_FILENAME, "w") as lock:  # Another run holds it.
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(UserError) as err:
            _run(run, tiny_prepared)
        assert str(err.value).splitlines()[0] == (
            f"another avts-train run is writing {run}; wait for it to finish, or stop it and "
            "re-run this command to resume (or give another --model_dir)"
        )
        assert [p.name for p in run.iterdir()] == [run_checks.LOCK_FILENAME]  # Untouched.
    _run(run, tiny_prepared)  # Released (the OS releases a dead run's lock too): it runs.
    assert (run / "checkpoints").is_dir()
