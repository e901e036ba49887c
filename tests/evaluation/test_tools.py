"""The evaluation tools end to end (subprocesses) and their one-line errors on bad input."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from checks import assert_one_error_line, error_line_of
from eval_helpers import run_in_process, run_subprocess
from tiny import REPO_ROOT

from avts_tf.data.manifest import IngestConfig, Manifest
from avts_tf.evaluation.features import Features


@pytest.fixture(scope="module")
def empty_prepared(tiny_prepared, tmp_path_factory):
    """A prepared dataset whose manifest lists no record."""
    out = tmp_path_factory.mktemp("empty")
    dataclasses.replace(Manifest.read(tiny_prepared), splits={}, written=()).write(out)
    return out


# -- user mistakes on the command line: one line on stderr, exit code 2 (subprocesses) ---

SCRIPTS = {
    "eval_audio": "avts-eval-audio",
    "eval_sync": "avts-eval-sync",
    "extract": "avts-extract",
    "finetune": "avts-finetune",
    "import_torchvision": "avts-import-torchvision",
    "make_synthetic": "avts-make-synthetic",
    "ablate": "avts-ablate",
    "downstream": "avts-downstream",
    "controls": "avts-controls",
}
NOPE = "/nonexistent/avts"
# Per tool: (arguments, words of the error line). Flags are checked before TensorFlow loads.
MISTAKES = {
    "eval_audio": [
        ([f"--checkpoint={NOPE}"], ["--checkpoint", "does not exist"]),
        ([f"--features={NOPE}.npz"], ["--features", "does not exist"]),
        (["--baseline=mfcc", f"--data={NOPE}"], ["--data", "does not exist"]),
        (["--baseline=mfcc", "--protocol=esc5"], ["--protocol", "esc50"]),
        (["--baseline=mfcc", "--C=a,1"], ["--C", "positive numbers"]),
        (["--baseline=mfcc", "--num_folds=1"], ["--num_folds", ">= 2"]),
    ],
    "eval_sync": [
        ([], ["--model_dir", "is required"]),
        ([f"--model_dir={NOPE}", "--data=."], ["--model_dir", "does not exist"]),
        ([f"--model_dir={NOPE}", f"--data={NOPE}"], ["--data", "does not exist"]),
        (["--model_dir=.", "--data=.", "--clips_per_video=0"], ["--clips_per_video"]),
    ],
    "extract": [
        ([], ["--checkpoint", "is required"]),
        ([f"--checkpoint={NOPE}"], ["--checkpoint", "does not exist"]),
        (["--checkpoint=.", "--tower=both"], ["--tower", "audio"]),
        (["--checkpoint=.", "--batch_size=0"], ["--batch_size"]),
        (["--checkpoint=.", "--hop_s=-1"], ["--hop_s", "must be > 0"]),
    ],
    "finetune": [
        (["--data=."], ["--init", "is required"]),
        ([f"--init={NOPE}", "--data=."], ["--init", "does not exist", "scratch"]),
        (["--init=scratch", f"--data={NOPE}"], ["--data", "does not exist"]),
        (["--init=scratch", "--data=.", "--folds=1,x"], ["--folds", "positive integers"]),
        (["--init=scratch", "--data=.", "--verbose=3"], ["--verbose"]),
    ],
    "import_torchvision": [
        (["--arch=r50", "--checkpoint=.", "--output=a.keras"], ["--arch", "r2plus1d_18"]),
        (
            ["--arch=r3d_18", f"--checkpoint={NOPE}.pth", "--output=a.keras"],
            ["--checkpoint", "does not exist"],
        ),
        (["--arch=r3d_18", f"--checkpoint={__file__}", "--output=a.h5"], ["--output", ".keras"]),
    ],
    "make_synthetic": [
        ([], ["--output", "is required"]),
        (["--output=x", "--num_videos=0"], ["--num_videos"]),
    ],
    "ablate": [
        (["--variants=easy,medium"], ["--variants", "curriculum"]),
        (["--steps=0"], ["--steps"]),
        (["extra"], ["unexpected arguments extra"]),
    ],
    "downstream": [
        ([], ["--model_dir", "is required"]),
        ([f"--model_dir={NOPE}", "--methods=avts,byol"], ["--methods", "avts_tssl"]),
        ([f"--model_dir={NOPE}", f"--data={NOPE}"], ["--data", "does not exist"]),
        ([f"--model_dir={NOPE}", "--shots=0"], ["--shots"]),
        ([f"--model_dir={NOPE}", "--head_steps=1,x"], ["--head_steps", "integers"]),
    ],
    "controls": [
        (["--controls=none,shuffled"], ["--controls", "shuffled_frames", "unrelated_audio"]),
        (["--seeds=0,x"], ["--seeds", "integers"]),
        (["--margin=0"], ["--margin", "(0, 1)"]),
    ],
}


def _script(tool: str) -> str | None:
    """The tool's console script, on PATH or next to this interpreter."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which(SCRIPTS[tool], path=path)


@pytest.mark.parametrize("tool", sorted(MISTAKES))
def test_user_mistakes_end_in_one_error_line(tool, tmp_path):
    for args, words in MISTAKES[tool]:
        result = run_subprocess(tool, *args, timeout=120)
        error_line_of(result, *words)
        assert result.stdout == ""
    # The console script is installed and takes the same path.
    script = _script(tool)
    assert script, f"console script {SCRIPTS[tool]} not found; pip install -e ."
    result = subprocess.run(
        [script, "--no_such_flag=1"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    error_line_of(result, "Unknown command line flag 'no_such_flag'")


def test_help_shows_the_tools_usage_and_flags():
    result = run_subprocess("extract", "--helpshort", timeout=120)
    # absl's help flags exit with status 1 after printing.
    assert "avts-extract --checkpoint=runs/quickstart" in result.stdout
    for flag in ("--checkpoint", "--output_dir", "--hop_s", "--data", "--layout"):
        assert f"  {flag}:" in result.stdout, flag


# -- bad input: one line on stderr, exit code 2 (in process, fast) ----------------------


@pytest.mark.parametrize("tool", ["extract", "eval_audio", "finetune"])
def test_missing_checkpoint(tool, tiny_prepared, tmp_path):
    flag = "--init" if tool == "finetune" else "--checkpoint"
    extra = ["--tower", "audio", "--output", str(tmp_path / "f.npz")] if tool == "extract" else []
    code, _, err = run_in_process(
        tool, flag, str(tmp_path / "nope"), "--data", str(tiny_prepared), *extra
    )
    assert_one_error_line(code, err, "does not exist")


def test_eval_sync_missing_model_dir(tiny_prepared, tmp_path):
    code, _, err = run_in_process(
        "eval_sync", "--model_dir", str(tmp_path / "nope"), "--data", str(tiny_prepared)
    )
    assert_one_error_line(code, err, "does not exist")


def test_every_tool_reading_a_run_takes_it_as_checkpoint(tiny_run, tiny_prepared, tmp_path):
    """``--checkpoint RUN`` names the run in every tool, eval-sync and plot-run included."""
    code, _, err = run_in_process(
        "eval_sync",
        "--checkpoint",
        str(tiny_run),
        "--data",
        str(tiny_prepared),
        "--kinds",
        "medium",
    )
    assert_one_error_line(code, err, "unknown negative kind")  # got past the flags
    logs = tmp_path / "run" / "tensorboard" / "train"
    with tf.summary.create_file_writer(str(logs)).as_default():
        tf.summary.scalar("epoch_loss", 0.5, step=0)
    code, out, err = run_in_process("plot_run", "--checkpoint", str(tmp_path / "run"))
    assert code == 0, err
    assert out.strip() == f"wrote {tmp_path / 'run' / 'curves.png'} (1 curves)"
    early = tmp_path / "early" / "tensorboard" / "train"  # no epoch ended yet
    with tf.summary.create_file_writer(str(early)).as_default():
        tf.summary.scalar("batch_loss", 0.5, step=0)
    code, _, err = run_in_process("plot_run", "--checkpoint", str(tmp_path / "early"))
    assert err == (
        f"error: no epoch curves in {tmp_path / 'early'}/tensorboard; train for one "
        "epoch (train.Trainer.steps_per_epoch batches) or more\n"
    )


@pytest.mark.parametrize(
    "tool", ["av_offset", "eval_audio", "eval_fingerprint", "eval_retrieval", "extract", "finetune"]
)
def test_every_tool_reading_a_run_takes_it_as_model_dir(tool, tiny_run, tiny_prepared, tmp_path):
    """``--model_dir RUN``, avts-train's name of the run, works in every tool reading one.

    The tools whose own name is ``--checkpoint`` (or ``--init``) take it too, rather than
    answering ``Unknown command line flag 'model_dir'``.
    """
    extra = {
        "av_offset": [str(tmp_path / "clip.mp4")],
        "extract": ["--tower", "audio", "--output", str(tmp_path / "f.npz")],
        "eval_fingerprint": ["--distortions", "nope"],
    }.get(tool, [])
    data = [] if tool in ("av_offset", "eval_fingerprint") else ["--data", str(tmp_path / "nope")]
    code, _, err = run_in_process(tool, "--model_dir", str(tiny_run), *data, *extra)
    assert "Unknown command line flag" not in err
    # Got past the run's flag to the next mistake: the missing data (or clip, distortion).
    assert_one_error_line(code, err, "nope" if tool != "av_offset" else "clip.mp4")


def test_retrieval_refuses_missing_splits_and_unlabelled_videos_before_decoding(
    tiny_run, tiny_prepared, tmp_path
):
    """A split without videos names the flags to change; unlabelled videos are counted.

    Both are found before any video's features are computed, and the errors say which
    flags choose the splits and how many videos lack a label.
    """
    found = Manifest.read(tiny_prepared)
    train_only = tmp_path / "train_only"
    dataclasses.replace(
        found, splits={"train": found.splits["train"]}, written=found.records("train")
    ).write(train_only)
    code, _, err = run_in_process(
        "eval_retrieval", "--checkpoint", str(tiny_run), "--data", str(train_only)
    )
    assert_one_error_line(code, err)
    assert err == (
        f"error: no videos in split 'test' (queries) of {train_only} (splits with "
        "videos: train); name two with --train_split (database) and --test_split "
        "(queries), or prepare media with a held-out split (avts-prepare "
        "--test_fraction)\n"
    )
    unlabelled = tmp_path / "unlabelled"
    dataclasses.replace(
        found,
        written=tuple(
            dataclasses.replace(e, label="") if e.split == "test" and i % 2 else e
            for i, e in enumerate(found.written)
        ),
    ).write(unlabelled)
    test_records = found.records("test")
    cleared = sum(1 for i, e in enumerate(found.written) if e.split == "test" and i % 2)
    assert 0 < cleared < len(test_records)
    silent = tmp_path / "unlabelled_silent"
    unlabelled_found = Manifest.read(unlabelled)
    dataclasses.replace(
        unlabelled_found,
        written=tuple(
            dataclasses.replace(e, num_samples=0) if e.split == "test" else e
            for e in unlabelled_found.written
        ),
    ).write(silent)
    code, _, err = run_in_process(
        "eval_retrieval", "--checkpoint", str(tiny_run), "--data", str(silent)
    )
    assert err == (
        f"error: retrieval by class needs labelled videos: {cleared} of "
        f"{len(test_records)} in split 'test' of {silent} have no label, and "
        "audio <-> video retrieval needs two videos with sound in split 'test' "
        "(found 0); prepare the dataset from class folders or a CSV with labels\n"
    )


def test_retrieval_of_unlabelled_videos_measures_audio_and_video_alone(
    tiny_run, tiny_prepared, tmp_path, caplog
):
    """One's own footage has no labels: the tool still measures audio <-> video retrieval,
    which needs none."""
    import shutil

    found = Manifest.read(tiny_prepared)
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(tiny_prepared, unlabelled)
    dataclasses.replace(
        found, written=tuple(dataclasses.replace(e, label="") for e in found.written)
    ).write(unlabelled)
    out = tmp_path / "r.json"
    code, stdout, err = run_in_process(
        "eval_retrieval",
        "--checkpoint",
        str(tiny_run),
        "--data",
        str(unlabelled),
        "--num_clips",
        "3",
        "--output_json",
        str(out),
    )
    assert code == 0, err
    assert (
        "video -> video retrieval by class left out: retrieval by class needs labelled "
        f"videos: 6 of 6 in split 'train' of {unlabelled} have no label"
    ) in caplog.text
    results = json.loads(out.read_text())["pretrained"]
    assert results["video_to_video"] is None
    cross = results["cross_modal"]
    assert stdout.strip().splitlines()[-1] == (
        "retrieval (video -> audio, unlabelled videos): "
        + " ".join(f"R@{k}={cross[f'v2a_R@{k}']:.3f}" for k in (1, 5, 10, 20))
    )
    class_row = next(line for line in stdout.splitlines() if "(class)" in line)
    assert class_row.split()[-4:] == ["n/a"] * 4


def test_fingerprint_names_the_query_split_flag(tiny_run, tiny_prepared):
    code, _, err = run_in_process(
        "eval_fingerprint",
        "--checkpoint",
        str(tiny_run),
        "--data",
        str(tiny_prepared),
        "--query_split",
        "val",
    )
    assert err == (
        f"error: no videos in split 'val' of {tiny_prepared}; give --query_split "
        "one of: test, train, or prepare media with a held-out split (avts-prepare "
        "--test_fraction)\n"
    )


def test_unknown_layer_lists_valid_names(tiny_run, tiny_prepared, tmp_path):
    code, _, err = run_in_process(
        "extract",
        "--checkpoint",
        str(tiny_run),
        "--tower",
        "video",
        "--data",
        str(tiny_prepared),
        "--output",
        str(tmp_path / "f.npz"),
        "--layer",
        "fc9",
    )
    line = assert_one_error_line(
        code, err, "unknown layer 'fc9'", "valid layer names: auto, output, shared, video"
    )
    code, _, err = run_in_process(
        "eval_audio", "--checkpoint", str(tiny_run), "--data", str(tiny_prepared), "--layer", "fc9"
    )
    assert_one_error_line(code, err, "valid layer names: auto, output, audio")
    assert "dense" in line


@pytest.mark.parametrize("tool", ["extract", "eval_audio", "eval_sync", "finetune", "downstream"])
def test_empty_set(tool, tiny_run, empty_prepared, tmp_path):
    args = {
        "extract": [
            "--checkpoint",
            str(tiny_run),
            "--tower",
            "audio",
            "--output",
            str(tmp_path / "f.npz"),
        ],
        "eval_audio": ["--checkpoint", str(tiny_run)],
        "eval_sync": ["--model_dir", str(tiny_run)],
        "finetune": ["--init", str(tiny_run)],
        "downstream": ["--model_dir", str(tiny_run)],
    }[tool]
    code, _, err = run_in_process(tool, *args, "--data", str(empty_prepared))
    assert_one_error_line(code, err, "empty set")


def test_missing_data_and_other_bad_flags(tiny_run, tiny_prepared, tmp_path):
    code, _, err = run_in_process(
        "eval_audio", "--baseline", "mfcc", "--data", str(tmp_path / "nowhere")
    )
    assert_one_error_line(code, err, "does not exist")
    code, _, err = run_in_process("eval_audio", "--data", str(tiny_prepared))
    assert_one_error_line(code, err, "nothing to evaluate")
    code, _, err = run_in_process(
        "eval_audio",
        "--baseline",
        "mfcc",
        "--data",
        str(tiny_prepared),
        "--protocol",
        "esc50",
        "--quiet",
    )
    assert_one_error_line(code, err, "needs splits fold1..fold5")
    code, _, err = run_in_process("finetune", "--init", "scratch", "--data", str(tiny_prepared))
    assert_one_error_line(code, err, "--arch CHECKPOINT or --gin_file")
    code, _, err = run_in_process(
        "eval_sync", "--model_dir", str(tiny_run), "--data", str(tiny_prepared), "--kinds", "medium"
    )
    assert_one_error_line(code, err, "unknown negative kind")
    code, _, err = run_in_process(
        "extract",
        "--checkpoint",
        str(tiny_run / "video_tower.keras"),
        "--tower",
        "audio",
        "--list_layers",
    )
    assert_one_error_line(code, err, "expected the audio tower")
    code, _, err = run_in_process(
        "downstream", "--model_dir", str(tiny_run), "--data", str(tmp_path)
    )
    assert_one_error_line(code, err, "is not a prepared dataset")
    code, _, err = run_in_process(
        "downstream",
        "--model_dir",
        str(tiny_run),
        "--data",
        str(tiny_prepared),
        "--head_steps",
        "x",
    )
    assert_one_error_line(code, err, "--head_steps=['x']", "must be integers")


def test_list_layers(tiny_run):
    code, out, _ = run_in_process(
        "extract", "--checkpoint", str(tiny_run / "audio_tower.keras"), "--list_layers"
    )
    assert code == 0 and out.split()[0] == "audio" and len(out.split()) == 4


def _waveform_lengths(data) -> dict[str, int]:
    """Samples of audio per record id of a prepared dataset."""
    from avts_tf.evaluation import records_io

    splits = records_io.check_splits(data, None)
    return {
        r["id"].decode(): len(r["waveform"])
        for r in records_io.parsed_records(data, splits).as_numpy_iterator()
    }


def test_extract_features_output_dir_timestamps(tiny_run, tiny_prepared, tmp_path):
    """One .npz per file: the combined file's rows, and windows every --hop_s seconds."""
    from tiny import SPEC

    from avts_tf.evaluation.features import window_samples

    combined, per_file = tmp_path / "all.npz", tmp_path / "per_file"
    code, out, err = run_in_process(
        "extract",
        f"--checkpoint={tiny_run}",
        "--tower=audio",
        f"--data={tiny_prepared}",
        f"--output={combined}",
        f"--output_dir={per_file}",
        "--quiet",
    )
    assert code == 0, err
    assert f"wrote 8 files to {per_file}" in out
    feats = Features.load(combined)
    rate = SPEC.log_mel.sample_rate
    window = window_samples(SPEC.log_mel, 24)  # The tiny audio tower's 24 log-mel frames.
    lengths = _waveform_lengths(tiny_prepared)
    for index, file_id in enumerate(feats.ids):
        saved = np.load(per_file / f"{file_id}.npz")
        assert sorted(saved.files) == ["embedding", "timestamps"]
        np.testing.assert_array_equal(saved["embedding"], feats.features[feats.file_index == index])
        count = 1 + (lengths[file_id] - window) // window
        assert saved["timestamps"].tolist() == [k * window / rate for k in range(count)]

    hop = tmp_path / "hop"
    code, out, err = run_in_process(
        "extract",
        f"--checkpoint={tiny_run}",
        "--tower=audio",
        f"--data={tiny_prepared}",
        f"--output_dir={hop}",
        "--hop_s=0.25",
        "--quiet",
    )
    assert code == 0, err
    for file_id, length in lengths.items():
        saved = np.load(hop / f"{file_id}.npz")
        count = 1 + (length - window) // 4000  # 0.25 s at 16 kHz.
        assert (length, window, count) == (48000, 8000, 11)  # 3 s: windows at 0 .. 2.5 s.
        assert saved["timestamps"].tolist() == [0.25 * k for k in range(count)]
        assert saved["embedding"].shape == (count, 8)
    # The first window of every file is the same with either hop.
    first = np.load(per_file / f"{feats.ids[0]}.npz")["embedding"][0]
    np.testing.assert_allclose(
        np.load(hop / f"{feats.ids[0]}.npz")["embedding"][0], first, rtol=1e-5, atol=1e-6
    )

    video = tmp_path / "video"
    code, out, err = run_in_process(
        "extract",
        f"--checkpoint={tiny_run}",
        "--tower=video",
        f"--data={tiny_prepared}",
        f"--output_dir={video}",
        "--hop_s=0.5",
        "--quiet",
    )
    assert code == 0, err
    for file_id in lengths:
        saved = np.load(video / f"{file_id}.npz")
        # 3 s at 8 fps = 24 frames, clips of 4 frames start at frames 0, 4, ..., 20.
        assert saved["timestamps"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
        assert saved["embedding"].shape[0] == 6


# -- happy paths in subprocesses --------------------------------------------------------


def _probe_accuracies(feats, num_folds, seed):
    """Per-file accuracy of each kfold fold, computed here with scikit-learn and NumPy."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    files = np.flatnonzero(feats.labels >= 0)
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    accuracies = []
    for train, test in splitter.split(files, feats.labels[files]):
        windows = np.isin(feats.file_index, files[train])
        svm = make_pipeline(StandardScaler(), LinearSVC(C=1.0, max_iter=20000))
        svm.fit(feats.features[windows], feats.labels[feats.file_index[windows]])
        hits = []
        for f in files[test]:
            scores = svm.decision_function(feats.features[feats.file_index == f])
            scores = np.stack([-scores, scores], 1) if scores.ndim == 1 else scores
            hits.append(svm.classes_[np.argmax(scores.mean(0))] == feats.labels[f])
        accuracies.append(float(np.mean(hits)))
    return accuracies


@pytest.mark.slow
def test_extract_features_and_eval_audio_cli(tiny_run, tiny_prepared, tmp_path):
    out = tmp_path / "audio.npz"
    result = run_subprocess(
        "extract",
        "--checkpoint",
        str(tiny_run),
        "--tower",
        "audio",
        "--data",
        str(tiny_prepared),
        "--output",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote" in result.stdout and "48 windows x 8 features from 8 files" in result.stdout
    feats = Features.load(out)
    assert feats.features.shape == (48, 8) and feats.info["checkpoint"] == str(tiny_run)

    report = tmp_path / "audio.json"
    result = run_subprocess(
        "eval_audio",
        "--features",
        str(out),
        "--checkpoint",
        str(tiny_run),
        "--baseline",
        "mfcc",
        "--data",
        str(tiny_prepared),
        "--protocol",
        "kfold",
        "--num_folds",
        "2",
        "--quiet",
        "--output_json",
        str(report),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["features", "folds"]
    assert [line.split()[0] for line in lines[2:5]] == ["audio.npz", "audio", "MFCC"]
    results = json.loads(report.read_text())
    assert len(results) == 3
    for entry in results.values():
        accuracies = [f["accuracy"] for f in entry["folds"]]
        assert len(accuracies) == 2 and entry["mean"] == np.mean(accuracies)
        assert entry["std"] == np.std(accuracies)
        for fold in entry["folds"]:  # A fraction of the fold's test files.
            assert fold["accuracy"] * fold["test_files"] == pytest.approx(
                round(fold["accuracy"] * fold["test_files"]), abs=1e-9
            )
    # The .npz's per-file accuracies recomputed: stratified 2-fold split of the files (seed
    # 0), scaler + linear SVM (C=1) on their windows, decision scores averaged per file.
    expected = _probe_accuracies(feats, num_folds=2, seed=0)
    npz_entry = results["audio.npz (output)"]  # The report's keys are sorted: name it.
    assert [f["accuracy"] for f in npz_entry["folds"]] == expected
    # The .npz and the tower give the same features, so the same accuracies.
    npz, tower = (results[k]["folds"] for k in ("audio.npz (output)", "audio tower (output)"))
    assert [f["accuracy"] for f in npz] == [f["accuracy"] for f in tower]


@pytest.mark.slow
def test_a_refusal_of_media_names_the_media_not_the_temporary_folder(tiny_run, tiny_prepared):
    """Raw media are prepared into a temporary folder; refusing what it holds named that
    folder (``/tmp/avts_e1wcnusx has 0 label(s)``), which the user never saw."""
    media = tiny_prepared.parent / "videos" / "videos" / "test"  # two files, no class folders
    code, _, err = run_in_process(
        "finetune",
        "--init",
        "scratch",
        "--arch",
        str(tiny_run),
        "--data",
        str(media),
        "--short_side",
        "32",
    )
    assert_one_error_line(
        code,
        err,
        f"error: {media} (as prepared) has 0 label(s); fine-tuning needs at least 2: "
        "put each class's files in a folder named after it, or give a CSV with labels",
    )
    assert "avts_" not in err


def test_eval_sync_refuses_a_run_without_a_sync_task_before_preparing_media(
    tiny_prepared, tmp_path
):
    """A run without a sync task is refused before any media file is decoded."""
    from tiny import describe_run

    from avts_tf.tasks.temporal.task import TemporalContrastive

    run = tmp_path / "tssl_run"
    run.mkdir()
    describe_run(run, tiny_prepared, task=TemporalContrastive())
    media = tiny_prepared.parent / "videos" / "videos" / "test"
    code, out, err = run_in_process("eval_sync", "--model_dir", str(run), "--data", str(media))
    assert_one_error_line(
        code,
        err,
        f"error: the task of run {run} (TemporalContrastive) is not a synchronization task",
    )
    assert "records in" not in out + err  # nothing was prepared


def test_extract_features_from_a_media_folder(tiny_run, tiny_prepared, tmp_path):
    """Raw media are prepared into a temporary folder first. A link to a file and a copy of
    one are ingested once, and get no .npz of their own in --output_dir."""
    import shutil

    media = tmp_path / "media"
    shutil.copytree(tiny_prepared.parent / "videos" / "videos" / "test", media)
    first, second = sorted(p.name for p in media.iterdir())
    shutil.copy(media / first, media / "z_copy.mp4")
    (media / "z_link.mp4").symlink_to(media / second)
    out, per_file = tmp_path / "video.npz", tmp_path / "per_file"
    result = run_subprocess(
        "extract",
        "--checkpoint",
        str(tiny_run),
        "--tower",
        "video",
        "--data",
        str(media),
        "--output",
        str(out),
        "--output_dir",
        str(per_file),
        "--num_clips",
        "2",
        "--short_side",
        "32",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    feats = Features.load(out)
    assert sorted(feats.ids) == [first, second]
    assert np.bincount(feats.file_index).tolist() == [2, 2]
    assert sorted(p.name for p in per_file.iterdir()) == sorted(
        f"{name}.npz" for name in (first, second, "z_copy.mp4", "z_link.mp4")
    )
    for duplicate, original in (("z_copy.mp4", first), ("z_link.mp4", second)):
        got, want = np.load(per_file / f"{duplicate}.npz"), np.load(per_file / f"{original}.npz")
        for key in ("embedding", "timestamps"):
            np.testing.assert_array_equal(got[key], want[key])
    assert "wrote 4 files to" in result.stdout
    assert (
        "; 2 of them for inputs that duplicate another (a link or a copy, ingested once)"
        in result.stdout
    )


def test_video_features_of_a_media_folder_keep_the_files_without_sound(tiny_run, tmp_path):
    """Three of the six real files have no audio track: a video tower needs none."""
    real_av = REPO_ROOT.parent / "shared" / "data" / "real_av"
    if not real_av.is_dir():
        pytest.skip(f"real media not found at {real_av} (the shared data folder is absent)")
    out = tmp_path / "video.npz"
    result = run_subprocess(
        "extract",
        "--checkpoint",
        str(tiny_run),
        "--tower",
        "video",
        "--data",
        str(real_av),
        "--output",
        str(out),
        "--num_clips",
        "2",
        "--short_side",
        "32",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(Features.load(out).ids) == sorted(p.name for p in real_av.iterdir())


def test_media_given_to_a_run_is_prepared_like_its_data_and_scored_whole(
    tiny_run, tiny_prepared, tmp_path
):
    """Raw media takes the run's frame size (not --short_side's default); a folder (one
    split) is scored whole, not asked for a split 'test' it does not have."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    description = json.loads((run / "run.json").read_text())
    description["ingest"] = {**(description.get("ingest") or {}), "short_side": 24}
    (run / "run.json").write_text(json.dumps(description))
    videos = tiny_prepared.parent / "videos" / "videos"  # the files, not their dataset.csv
    report = tmp_path / "sync.json"
    code, _, err = run_in_process(
        "eval_sync",
        "--checkpoint",
        str(run),
        "--data",
        str(videos),
        "--prepared_dir",
        str(tmp_path / "prepared"),
        "--kinds",
        "easy",
        "--clips_per_video",
        "1",
        "--output_json",
        str(report),
    )
    assert code == 0, err
    prepared = Manifest.read(tmp_path / "prepared")
    assert (prepared.config.short_side, prepared.fps) == (24, 8.0)
    assert prepared.split_names == ["train"]  # a plain folder: every file in one split
    assert json.loads(report.read_text())["pairs_easy"] == 8  # all 8 videos, one clip each


@pytest.mark.slow
def test_eval_sync_cli(tiny_run, tiny_prepared, tmp_path):
    report = tmp_path / "sync.json"
    result = run_subprocess(
        "eval_sync",
        "--model_dir",
        str(tiny_run),
        "--data",
        str(tiny_prepared),
        "--output_json",
        str(report),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:5]}
    assert set(rows) == {"easy", "hard", "super_hard"}
    assert "n/a" in rows["super_hard"]  # 0.5 s clips cannot be shifted by >= 0.5 s.
    results = json.loads(report.read_text())
    assert results["pairs_easy"] == 8 and results["pairs_super_hard"] == 0


@pytest.mark.slow
def test_finetune_video_cli(tiny_run, tiny_prepared, tmp_path):
    report = tmp_path / "ft.json"
    result = run_subprocess(
        "finetune",
        "--init",
        "scratch",
        "--arch",
        str(tiny_run),
        "--fusion",
        "--data",
        str(tiny_prepared),
        "--steps",
        "2",
        "--batch_size",
        "4",
        "--clips_per_video",
        "10",
        "--few_shot",
        "1",
        "--verbose",
        "0",
        "--output_json",
        str(report),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fold 1: video accuracy" in result.stdout
    results = json.loads(report.read_text())
    assert results["fusion"] and results["folds"][0]["videos"] == 2


@pytest.mark.slow
def test_downstream_results_cli(tiny_run, tiny_prepared, tmp_path):
    report = tmp_path / "downstream.json"
    result = run_subprocess(
        "downstream",
        "--model_dir",
        str(tiny_run),
        "--data",
        str(tiny_prepared),
        "--shots",
        "1",
        "--repeats",
        "1",
        "--finetune_steps",
        "2",
        "--finetune_batch",
        "4",
        "--head_steps",
        "1",
        "--clips_per_video",
        "2",
        "--output_json",
        str(report),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    header = [line for line in result.stdout.splitlines() if line.startswith("accuracy %")]
    assert header and "MFCC" in header[0] and "AVTS pretrained" in header[0]
    results = json.loads(report.read_text())
    assert set(results["audio_probe"]["few_shot"]) == {"MFCC", "random init", "AVTS pretrained"}
    assert set(results["video_probe"]["all"]) == {"random init", "AVTS pretrained"}
    assert set(results["finetune_video_head1"]) == {"random init", "AVTS pretrained"}


FSDD = REPO_ROOT.parent / "shared" / "data" / "fsdd" / "recordings"


@pytest.mark.slow
def test_downstream_results_compares_methods_and_fsdd_speakers(tiny_run, tiny_prepared, tmp_path):
    if not FSDD.is_dir():
        pytest.skip(f"FSDD not found at {FSDD} (the shared data folder is absent)")
    root = tmp_path / "runs"
    root.mkdir()
    for method in ("avts", "tssl"):  # Two finished runs (the tiny run twice).
        (root / method).symlink_to(tiny_run, target_is_directory=True)
    fsdd = tmp_path / "fsdd"  # Two speakers, 10 digits twice: two held-out-speaker folds.
    fsdd.mkdir()
    for speaker in ("george", "jackson"):
        for path in sorted(FSDD.glob(f"*_{speaker}_[01].wav")):
            (fsdd / path.name).symlink_to(path)
    report = tmp_path / "downstream.json"
    result = run_subprocess(
        "downstream",
        "--model_dir",
        str(root),
        "--methods=avts,tssl",
        "--data",
        str(tiny_prepared),
        "--fsdd",
        str(fsdd),
        "--repeats",
        "1",
        "--clips_per_video",
        "2",
        "--skip_finetune",
        "--output_json",
        str(report),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    header = [line for line in result.stdout.splitlines() if line.startswith("accuracy %")]
    for column in ("MFCC", "random init", "AVTS pretrained", "TSSL pretrained"):
        assert column in header[0]
    assert any(
        line.startswith("FSDD audio linear probe, 2 held-out speakers")
        for line in result.stdout.splitlines()
    )
    results = json.loads(report.read_text())
    columns = {"MFCC", "random init", "AVTS pretrained", "TSSL pretrained"}
    assert set(results["fsdd_speaker_probe"]) == columns
    assert set(results["audio_probe"]["few_shot"]) == columns
    # The same run under two names gives the same numbers.
    probe = results["fsdd_speaker_probe"]
    assert probe["AVTS pretrained"]["runs"] == probe["TSSL pretrained"]["runs"]
    assert len(probe["MFCC"]["runs"]) == 2


def test_audio_features_leave_out_videos_without_sound(tiny_run, tmp_path):
    """A silent file has no audio feature, not one of zero-padded silence."""
    real_av = REPO_ROOT.parent / "shared" / "data" / "real_av"
    if not real_av.is_dir():
        pytest.skip(f"real media not found at {real_av} (the shared data folder is absent)")
    from avts_tf.data.ingestion import prepare
    from avts_tf.evaluation import checkpoint, features

    data = tmp_path / "prepared"
    prepare.prepare_dataset(
        real_av,
        data,
        IngestConfig(short_side=32, require_audio=False),
        options=prepare.RunOptions(progress=False),
    )
    tower = checkpoint.load_tower(tiny_run, "audio")
    spec = checkpoint.clip_spec_for(tiny_run, audio_tower=tower)
    feats = features.tower_features(tower, "audio", data, spec, progress=False)
    assert sorted(feats.ids) == ["bento.mp4", "mmaction2_test.avi", "nasa_13013.mp4"]
    from avts_tf.evaluation import mfcc  # The baseline is scored on the same files.

    assert sorted(mfcc.mfcc_features(data, progress=False).ids) == sorted(feats.ids)
    windows = mfcc.mfcc_features(data, window_s=0.5, progress=False)
    assert sorted(set(windows.ids)) == sorted(feats.ids)
