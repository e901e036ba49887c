"""The plain-Keras example script runs end to end (no gin)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sync_reference import numpy_sync_accuracy

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fit_example_runs_and_reports_sync_accuracy(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "examples" / "fit_example.py"),
            "--steps",
            "3",
            "--batch_size",
            "4",
            "--num_videos",
            "8",
            "--cache_dir",
            str(tmp_path / "cache"),
            "--save_dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert last == f"sync_accuracy: {results['sync_accuracy']:.3f}"
    # The saved towers on the example's evaluation clips, scored with NumPy.
    import keras

    import avts_tf.backbones  # noqa: F401 - registers the towers' layers for loading.
    from avts_tf.data import pipeline
    from avts_tf.data.audio_features import LogMelSpec
    from avts_tf.data.ingestion.datasets import synthetic_dataset

    data_dir = synthetic_dataset(cache_dir=str(tmp_path / "cache"), num_videos=8)  # cached
    spec = pipeline.ClipSpec(  # The example's.
        num_frames=8, crop_size=32, log_mel=LogMelSpec(mel_bins=40, window_s=0.04, hop_s=0.02)
    )
    reference = numpy_sync_accuracy(
        keras.saving.load_model(tmp_path / "run" / "video_tower.keras"),
        keras.saving.load_model(tmp_path / "run" / "audio_tower.keras"),
        pipeline.eval_dataset(data_dir, 32, spec=spec),
    )
    assert reference["pairs"] == 8  # 2 test videos x 4 clips, each against the other.
    assert results["sync_accuracy"] == pytest.approx(reference["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_fit_example_trains_the_temporal_method(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "examples" / "fit_example.py"),
            "--method",
            "temporal",
            "--steps",
            "3",
            "--batch_size",
            "4",
            "--num_videos",
            "8",
            "--cache_dir",
            str(tmp_path / "cache"),
            "--save_dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"speed_accuracy_video: {results['speed_accuracy_video']:.3f}"
    heads = {
        f"{kind}_accuracy_{modality}"
        for kind in ("speed", "direction", "order")
        for modality in ("video", "audio")
    } | {"order_accuracy_cross"}
    assert heads | {"retrieval_r1_v2a", "contrastive_loss", "loss"} == set(results)
