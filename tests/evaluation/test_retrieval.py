"""Retrieval: recall by class and by instance against hand-made tables, and the tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from checks import assert_one_error_line
from eval_helpers import run_in_process
from tiny import REPO_ROOT

from avts_tf.errors import UserError
from avts_tf.evaluation import retrieval
from avts_tf.evaluation.features import Features
from avts_tf.tasks.temporal.task import PROJECTIONS


def test_class_recall_by_hand():
    # Database on the unit circle at 0, 90, 180, 270 degrees with classes 0, 1, 0, 2.
    db = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], float)
    db_labels = np.array([0, 1, 0, 2])
    # Query near 80 degrees (class 0): nearest 90 (1), then 0 (0) -> miss at 1, hit at 2.
    # Query near 260 degrees (class 2): nearest 270 (2) -> hit at 1.
    # Query at 135 degrees exactly between 90 and 180 (class 1): ties go to the lower index
    # (90 degrees, class 1) -> hit at 1.
    queries = np.array([[np.cos(1.40), np.sin(1.40)], [np.cos(4.54), np.sin(4.54)], [-1, 1]], float)
    got = retrieval.class_recall(queries, np.array([0, 2, 1]), db, db_labels, ks=(1, 2, 4))
    assert got == {"R@1": pytest.approx(2 / 3), "R@2": 1.0, "R@4": 1.0}


def test_instance_recall_by_hand():
    video = np.array([[1, 0], [0, 1], [1, 1]], float)
    audio = np.array([[0.9, 0.1], [1, 0], [1, 1.1]], float)
    # v0 -> a1 (exact), a0, a2: own (a0) at rank 2; v1 -> a2 first? cos(v1,a2)=0.74,
    # cos(v1,a0)=0.11, cos(v1,a1)=0: own (a1) last; v2 -> a2 first (0.998): hit at 1.
    got = retrieval.instance_recall(video, audio, ks=(1, 2, 3))
    assert got == {"R@1": pytest.approx(1 / 3), "R@2": pytest.approx(2 / 3), "R@3": 1.0}


def test_per_file_averages_windows_then_normalises():
    feats = Features(
        features=np.array([[1, 0], [0, 2], [3, 4]], np.float32),
        file_index=np.array([0, 0, 1]),
        ids=np.array(["a", "b"]),
        labels=np.array([0, 1]),
        splits=np.array(["test", "train"]),
        label_names=["x", "y"],
    )
    np.testing.assert_allclose(
        retrieval.per_file(feats), [[1 / np.sqrt(5), 2 / np.sqrt(5)], [0.6, 0.8]], rtol=1e-6
    )
    with pytest.raises(UserError, match="no videos in split 'val'; splits present: test, train"):
        retrieval.video_retrieval(feats, "val", "test")


def test_eval_retrieval_tool(tiny_run, tiny_prepared, tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "tools/eval_retrieval.py",
            f"--checkpoint={tiny_run}",
            f"--data={tiny_prepared}",
            "--num_clips=3",
            "--random_init",
            f"--output_json={out}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    v2v = results["pretrained"]["video_to_video"]
    assert proc.stdout.strip().splitlines()[-1] == "retrieval: " + " ".join(
        f"R@{k}={v2v[f'R@{k}']:.3f}" for k in (1, 5, 10, 20)
    )
    # 2 test queries against 6 training videos of 2 classes: top 5 always holds both.
    assert v2v["R@5"] == 1.0 and v2v["R@1"] in (0.0, 0.5, 1.0)
    assert set(results) == {"pretrained", "random init"}
    assert results["pretrained"]["cross_modal"]["v2a_R@20"] == 1.0  # 2 test videos
    # AVTS compares the towers' outputs directly: no heads, trained or fresh.
    assert {r["cross_modal_space"] for r in results.values()} == {"tower outputs"}
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run(
        [sys.executable, "tools/eval_retrieval.py", f"--checkpoint={tmp_path / 'none'}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ")


def test_eval_retrieval_prepares_labelled_media_like_the_run(tiny_run, tiny_prepared, tmp_path):
    """A CSV of videos is taken as raw media, not refused as an unprepared dataset: it is
    prepared at the run's settings."""
    from eval_helpers import run_in_process

    from avts_tf.data.manifest import Manifest

    csv = tiny_prepared.parent / "videos" / "dataset.csv"
    code, out, err = run_in_process(
        "eval_retrieval",
        "--checkpoint",
        str(tiny_run),
        "--data",
        str(csv),
        "--prepared_dir",
        str(tmp_path / "prepared"),
        "--num_clips",
        "3",
        "--short_side",
        "32",
    )
    assert code == 0, err
    prepared = Manifest.read(tmp_path / "prepared")
    assert prepared.fps == 8.0 and prepared.config.short_side == 32
    assert {s: prepared.num_records(s) for s in prepared.split_names} == {"test": 2, "train": 6}
    assert out.strip().splitlines()[-1].startswith("retrieval: R@1=")
    assert "R@5=1.000" in out.strip().splitlines()[-1]  # 2 classes: the top 5 hold both


def test_eval_retrieval_leaves_out_cross_modal_rows_without_two_videos_with_sound(
    tiny_run, tiny_prepared, tmp_path
):
    """UCF101's silent videos: video -> video is still measured; audio <-> video is not."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_prepared, data)
    manifest = json.loads((data / "manifest.json").read_text())
    for entry in manifest["written"]:
        if entry["split"] == "test":
            entry["num_samples"] = 0  # As prepared from videos without an audio track.
    (data / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "tools/eval_retrieval.py",
            f"--checkpoint={tiny_run}",
            f"--data={data}",
            "--num_clips=3",
            f"--output_json={out}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "cross-modal retrieval left out: it needs two videos with sound in split 'test', "
        "found 0" in proc.stderr
    )
    rows = [line.split() for line in proc.stdout.splitlines() if "(same video)" in line]
    assert [row[-4:] for row in rows] == [["n/a"] * 4, ["n/a"] * 4]
    results = json.loads(out.read_text())["pretrained"]
    assert results["cross_modal"] is None and results["video_to_video"]["R@5"] == 1.0


@pytest.fixture(scope="module")
def temporal_run(tmp_path_factory, tiny_prepared):
    """A temporal run as ``train.run`` leaves it (untrained), and the model it holds."""
    import keras
    from tiny import tiny_audio_tower, tiny_video_tower, write_finished_run

    from avts_tf.models import AVTSModel
    from avts_tf.tasks.temporal.task import TemporalContrastive

    keras.utils.set_random_seed(4)
    run = tmp_path_factory.mktemp("temporal_run")
    model = AVTSModel(
        tiny_video_tower(),
        tiny_audio_tower(),
        TemporalContrastive(projection_dim=8, hidden_units=16),
    )
    write_finished_run(run, tiny_prepared, model)
    return run, model


def _projected(features: Features, head) -> Features:
    """``features`` through ``head``, L2-normalised, computed apart from the tool."""
    import dataclasses

    out = np.asarray(head(features.features, training=False), np.float64)
    return dataclasses.replace(features, features=out / np.linalg.norm(out, axis=1, keepdims=True))


def test_a_temporal_run_compares_audio_and_video_through_its_projection_heads(
    temporal_run, tiny_prepared, tmp_path
):
    """The tool ranked the temporal towers' raw outputs (two unrelated spaces: chance)."""
    from eval_helpers import run_in_process
    from tiny import SPEC

    from avts_tf.evaluation import checkpoint, features, shared_space

    run, model = temporal_run
    video, audio = (checkpoint.load_tower(run, w) for w in ("video", "audio"))
    space = shared_space.of_run(run, video, audio)
    assert space.name == PROJECTIONS
    heads = model.objective.heads
    raw, projected = {}, {}
    for which, tower in (("video", video), ("audio", audio)):
        kwargs = dict(layer="output", splits=["test"], num_clips=3, window_s=0.5, progress=False)
        raw[which] = features.tower_features(tower, which, tiny_prepared, SPEC, **kwargs)
        projected[which] = features.tower_features(
            tower, which, tiny_prepared, SPEC, head=space.head(which), **kwargs
        )
        expected = _projected(raw[which], heads[f"project_{which}"])  # the run's own heads
        np.testing.assert_allclose(projected[which].features, expected.features, atol=1e-5)
    out = tmp_path / "r.json"
    code, stdout, err = run_in_process(
        "eval_retrieval",
        "--model_dir",
        str(run),
        "--data",
        str(tiny_prepared),
        "--num_clips",
        "3",
        "--random_init",
        "--output_json",
        str(out),
    )
    assert code == 0, err
    results = json.loads(out.read_text())
    assert results["pretrained"]["cross_modal_space"] == PROJECTIONS
    assert results["random init"]["cross_modal_space"] == (f"{PROJECTIONS}, freshly initialised")
    assert results["pretrained"]["cross_modal"] == pytest.approx(
        retrieval.cross_modal_retrieval(projected["video"], projected["audio"], "test")
    )
    assert f"audio <-> video compared in {PROJECTIONS}" in stdout


def test_heads_of_a_run_without_a_checkpoint_are_refused(temporal_run, tmp_path):
    import shutil

    from avts_tf.evaluation import checkpoint, shared_space

    run = tmp_path / "run"
    shutil.copytree(temporal_run[0], run)
    shutil.rmtree(run / "checkpoints")
    video, audio = (checkpoint.load_tower(run, w) for w in ("video", "audio"))
    with pytest.raises(
        UserError,
        match="^the run's temporal task compares audio and video "
        f"through trained projection heads but {run} has no checkpoint yet; "
        r"wait for its first checkpoint \(train.Trainer.checkpoint_every_steps\)$",
    ):
        shared_space.of_run(run, video, audio)
    # The tool says so, but a split it cannot use first, before any weight is read.
    code, _, stderr = run_in_process(
        "eval_retrieval", "--checkpoint", str(run), "--test_split=nope"
    )
    assert_one_error_line(code, stderr, "no videos in split 'nope' (queries)")
    code, _, stderr = run_in_process("eval_retrieval", "--checkpoint", str(run))
    assert_one_error_line(code, stderr, "has no checkpoint yet")


def test_a_multi_task_run_is_compared_through_its_temporal_task_heads(tmp_path, tiny_prepared):
    import keras
    from tiny import tiny_audio_tower, tiny_video_tower, write_finished_run

    from avts_tf.evaluation import checkpoint, shared_space
    from avts_tf.models import AVTSModel
    from avts_tf.tasks.multi import MultiTask
    from avts_tf.tasks.sync.objectives import ContrastiveSync
    from avts_tf.tasks.temporal.task import TemporalContrastive

    keras.utils.set_random_seed(5)
    task = MultiTask(
        {
            "sync": ContrastiveSync(margin=1.0),
            "temporal": TemporalContrastive(projection_dim=8, hidden_units=16),
        }
    )
    write_finished_run(
        tmp_path, tiny_prepared, AVTSModel(tiny_video_tower(), tiny_audio_tower(), task)
    )
    video, audio = (checkpoint.load_tower(tmp_path, w) for w in ("video", "audio"))
    space = shared_space.of_run(tmp_path, video, audio)
    assert space.name == PROJECTIONS
    trained = task.tasks["temporal"].heads
    for which in ("video", "audio"):
        for got, want in zip(
            space.head(which).weights, trained[f"project_{which}"].weights, strict=True
        ):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_extract_gives_embeddings_in_the_space_the_run_compares_them_in(
    temporal_run, tiny_run, tiny_prepared, tmp_path
):
    """``avts-extract --layer=shared``: a temporal run's projections; an AVTS run's outputs."""
    import shutil

    from checks import assert_one_error_line
    from eval_helpers import run_in_process

    def extract(run, which, layer):
        out = tmp_path / f"{run.name}_{which}_{layer}.npz"
        code, stdout, err = run_in_process(
            "extract",
            "--model_dir",
            str(run),
            "--tower",
            which,
            "--data",
            str(tiny_prepared),
            "--layer",
            layer,
            "--splits",
            "test",
            "--num_clips",
            "2",
            "--output",
            str(out),
            "--quiet",
        )
        assert code == 0, err
        return Features.load(out), stdout

    run, model = temporal_run
    for which in ("video", "audio"):
        raw, _ = extract(run, which, "output")
        shared, stdout = extract(run, which, "shared")
        expected = _projected(raw, model.objective.heads[f"project_{which}"])
        np.testing.assert_allclose(shared.features, expected.features, atol=1e-5)
        assert f"(layer output, pool avg, head project_{which})" in stdout
    raw, _ = extract(tiny_run, "audio", "output")
    shared, _ = extract(tiny_run, "audio", "shared")
    np.testing.assert_array_equal(shared.features, raw.features)
    alone = tmp_path / "alone" / "audio_tower.keras"
    alone.parent.mkdir()
    shutil.copy(tiny_run / "audio_tower.keras", alone)
    code, _, err = run_in_process(
        "extract",
        "--checkpoint",
        str(alone),
        "--data",
        str(tiny_prepared),
        "--layer",
        "shared",
        "--output",
        str(tmp_path / "x.npz"),
    )
    assert_one_error_line(
        code,
        err,
        f"error: --layer=shared reads the space of a training "
        f"run's task, but {alone} is not in a run's model_dir; give the "
        "run's --model_dir",
    )
