"""The curriculum ablation: periodic evaluation, table, ordering check, plot, and the tool."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from sync_reference import numpy_sync_accuracy
from tiny import REPO_ROOT, tiny_audio_tower, tiny_video_tower

from avts_tf.experiments import ablation
from avts_tf.models import AVTSModel
from avts_tf.tasks.sync.curricula import StepSwitch
from avts_tf.tasks.sync.objectives import ContrastiveSync


def examples(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "video": rng.uniform(size=(n, 4, 8, 8, 3)).astype(np.float32),
        "audio": rng.uniform(size=(n, 8, 8, 1)).astype(np.float32),
        "audio_hard": rng.uniform(size=(n, 8, 8, 1)).astype(np.float32),
        "valid_hard": np.ones(n, bool),
        "video_id": np.arange(n, dtype=np.int64),
    }


def make_model() -> AVTSModel:
    keras.utils.set_random_seed(0)
    model = AVTSModel(
        tiny_video_tower((4, 8, 8, 3), embedding_dim=4),
        tiny_audio_tower((8, 8, 1), embedding_dim=4),
        ContrastiveSync(
            curriculum=StepSwitch([2], [{"easy": 1.0}, {"easy": 0.5, "hard": 0.5}]),
            eval_kinds=("easy", "hard"),
        ),
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    return model


def train_data() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(examples(32, 0)).batch(8).repeat()


def eval_data() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(examples(12, 1)).batch(6)


def test_epochs_to_steps():
    assert ablation.epochs_to_steps(50, 3600) == 180_000
    assert ablation.epochs_to_steps(2.5, 10) == 25
    with pytest.raises(ValueError, match="steps_per_epoch > 0"):
        ablation.epochs_to_steps(1, 0)


def test_switch_step_is_the_papers_fraction():
    assert ablation.switch_step(90) == 50
    assert ablation.switch_step(600) == 333


def test_periodic_evaluation_every_n_steps_leaves_training_logs_alone(tmp_path):
    plain = make_model().fit(train_data(), steps_per_epoch=3, epochs=2, verbose=0).history
    path = tmp_path / "history.jsonl"
    callback = ablation.PeriodicSyncEvaluation(eval_data(), every_n_steps=2, history_path=path)
    logged = (
        make_model()
        .fit(train_data(), steps_per_epoch=3, epochs=2, verbose=0, callbacks=[callback])
        .history
    )
    for key in ("loss", "sync_accuracy", "sync_accuracy_hard", "negatives_hard"):
        np.testing.assert_allclose(logged[key], plain[key], rtol=1e-6, err_msg=key)
    assert [p["step"] for p in callback.history] == [0, 2, 4, 6]
    assert ablation.read_history(path) == callback.history
    for point in callback.history:
        assert {"sync_accuracy", "sync_accuracy_hard", "loss", "wall_s"} <= set(point)
    # The first point is the untrained model's, the last the trained one's: both as NumPy
    # scores the towers' embeddings of the evaluation batches.
    for point, model in (
        (callback.history[0], make_model()),
        (callback.history[-1], callback.model),
    ):
        for kind, key in (("easy", "sync_accuracy"), ("hard", "sync_accuracy_hard")):
            reference = numpy_sync_accuracy(
                model.video_tower, model.audio_tower, eval_data(), kind=kind
            )
            assert reference["pairs"] == 12, kind
            assert point[key] == pytest.approx(reference["accuracy"], abs=1e-6), (point, kind)
    # The last point is the trained model's evaluation.
    final = callback.model.evaluate(eval_data(), return_dict=True, verbose=0)
    assert final["sync_accuracy"] == pytest.approx(callback.history[-1]["sync_accuracy"])
    assert final["sync_accuracy_hard"] == pytest.approx(callback.history[-1]["sync_accuracy_hard"])


def test_read_history_keeps_the_last_point_of_a_step(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"step": 2, "a": 1}\n{"step": 0, "a": 0}\n{"step": 2, "a": 3}\n')
    assert ablation.read_history(path) == [{"step": 0, "a": 0}, {"step": 2, "a": 3}]
    assert ablation.read_history(tmp_path / "missing.jsonl") == []


def fake_results(easy, hard, curriculum):
    def run(name, values):
        history = [
            {"step": 0, "sync_accuracy": 0.5, "sync_accuracy_hard": 0.5},
            {"step": 10, "sync_accuracy": values[0], "sync_accuracy_hard": values[1]},
        ]
        return {
            "variant": name,
            "train_steps": 10,
            "history": history,
            "switch_step": 6 if name == "curriculum" else None,
            "final": {"sync_accuracy": values[0], "sync_accuracy_hard": values[1]},
        }

    return {
        "easy": run("easy", easy),
        "hard": run("hard", hard),
        "curriculum": run("curriculum", curriculum),
    }


def test_table_and_ordering():
    results = fake_results(easy=(0.9, 0.55), hard=(0.6, 0.58), curriculum=(0.92, 0.6))
    table = ablation.format_table(results)
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    assert "easy-negative pairs" in lines[0] and "hard-negative pairs" in lines[0]
    assert lines[2] == "| easy only | 10 | 0.900 | 0.550 |"
    assert lines[4].startswith("| curriculum") and lines[4].endswith("| 0.920 | 0.600 |")
    assert ablation.check_ordering(results) == []
    worse = fake_results(easy=(0.9, 0.62), hard=(0.95, 0.58), curriculum=(0.92, 0.6))
    assert ablation.check_ordering(worse) == [
        "curriculum < easy-only on hard-negative pairs",
        "curriculum <= hard-only on easy-negative pairs",
    ]


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    results = fake_results((0.9, 0.5), (0.6, 0.6), (0.9, 0.6))
    path = ablation.plot_history(results, tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_variant():
    with pytest.raises(ValueError, match="known: easy, hard, curriculum"):
        ablation.run_variant("medium", "unused", 1, 1)


@pytest.mark.slow
def test_tool_prints_the_table_and_writes_the_plot(tmp_path, tiny_prepared):
    pytest.importorskip("matplotlib")
    out = tmp_path / "ablation"
    command = [
        sys.executable,
        "tools/ablate.py",
        "--steps=4",
        "--eval_every=2",
        f"--output_dir={out}",
        "--gin_param=train.run.dataset = @data.prepared_dataset()",
        f"--gin_param=data.prepared_dataset.data_dir = '{tiny_prepared}'",
        "--gin_param=train.Trainer.batch_size = 4",
        "--gin_param=train.Evaluation.batch_size = 8",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.strip().splitlines()
    table = lines[-5:]
    assert table[0].startswith("| training negatives")
    assert [row.split("|")[1].strip() for row in table[2:]] == [
        "easy only",
        "hard only",
        "curriculum easy -> 75/25",
    ]
    assert (out / "table.md").read_text().strip() == "\n".join(table)
    assert any(line.startswith("paper's ordering in kind: ") for line in lines)
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    for variant in ablation.VARIANTS:
        saved = json.loads((out / variant / "results.json").read_text())
        assert [p["step"] for p in saved["history"]] == [0, 2, 4]
        for key in ("sync_accuracy", "sync_accuracy_hard"):  # Same batches as train.run's.
            assert saved["history"][-1][key] == pytest.approx(saved["final"][key]), key
    assert json.loads((out / "curriculum" / "results.json").read_text())["switch_step"] == 2
    # Finished runs are reused.
    again = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stdout.count("reusing") == 3
    assert again.stdout.strip().splitlines()[-5:] == table
