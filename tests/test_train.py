"""The training job: fit plan, gin optimizers, outputs, NaN stop, checkpoints, roles."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import time

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf
from sync_reference import numpy_sync_accuracy
from tiny import REPO_ROOT, train_tiny
from tiny import SPEC as TINY_SPEC

from avts_tf import callbacks, train
from avts_tf.data import pipeline
from avts_tf.distribute import WorkerRole
from avts_tf.errors import RunInterrupted, TrainingDiverged, UserError
from avts_tf.tasks.sync.objectives import ContrastiveSync
from avts_tf.tasks.sync.samplers import SuperHardNegativeSampler
from avts_tf.train import Segment, fit_plan

# The tiny spec with LogMelSpec's default 25 ms window (same audio shape).
SPEC = dataclasses.replace(
    TINY_SPEC, log_mel=dataclasses.replace(TINY_SPEC.log_mel, window_s=0.025)
)


# -- fit plan ------------------------------------------------------------------------------
def test_fit_plan_from_scratch_is_one_fit():
    assert fit_plan(0, 30, 10) == [Segment(0, 0, 3, 10)]


def test_fit_plan_resumed_mid_epoch_finishes_the_epoch_first():
    assert fit_plan(13, 40, 10) == [Segment(13, 1, 2, 7), Segment(20, 2, 4, 10)]


def test_fit_plan_ends_with_a_partial_epoch():
    assert fit_plan(0, 25, 10) == [Segment(0, 0, 2, 10), Segment(20, 2, 3, 5)]
    assert fit_plan(22, 25, 10) == [Segment(22, 2, 3, 3)]


def test_fit_plan_batches_add_up():
    for start in range(0, 26):
        plan = fit_plan(start, 26, 4)
        assert sum((s.epochs - s.initial_epoch) * s.steps_per_epoch for s in plan) == 26 - start
        assert fit_plan(26, 26, 4) == []


# -- optimizers and schedules from gin ------------------------------------------------------
def test_gin_builds_sgd_momentum_with_step_decay():
    gin.parse_config(
        """
        train.Trainer.optimizer = @keras.optimizers.SGD
        keras.optimizers.SGD.momentum = 0.9
        keras.optimizers.SGD.learning_rate = @keras.optimizers.schedules.PiecewiseConstantDecay()
        keras.optimizers.schedules.PiecewiseConstantDecay.boundaries = [100, 200]
        keras.optimizers.schedules.PiecewiseConstantDecay.values = [0.1, 0.01, 0.001]
        """
    )
    optimizer = gin.query_parameter("train.Trainer.optimizer").scoped_configurable_fn()
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == 0.9
    schedule = optimizer._learning_rate
    assert float(schedule(150)) == pytest.approx(0.01)


def test_gin_builds_adamw_with_cosine_decay():
    gin.parse_config(
        """
        train.Trainer.optimizer = @keras.optimizers.AdamW
        keras.optimizers.AdamW.weight_decay = 0.05
        keras.optimizers.AdamW.learning_rate = @keras.optimizers.schedules.CosineDecay()
        keras.optimizers.schedules.CosineDecay.initial_learning_rate = 0.001
        keras.optimizers.schedules.CosineDecay.decay_steps = 1000
        keras.optimizers.schedules.CosineDecay.warmup_target = 0.002
        keras.optimizers.schedules.CosineDecay.warmup_steps = 100
        """
    )
    optimizer = gin.query_parameter("train.Trainer.optimizer").scoped_configurable_fn()
    assert isinstance(optimizer, keras.optimizers.AdamW) and optimizer.weight_decay == 0.05
    assert float(optimizer._learning_rate(100)) == pytest.approx(0.002)
    assert float(optimizer._learning_rate(1100)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("path", ["avts_tf/train.py", "tools/train.py"])
def test_the_trainer_names_no_task(path):
    """The trainer and its tool know no task: none of the sync task's words appear."""
    source = (REPO_ROOT / path).read_text(encoding="utf-8")
    for word in ("negatives", "shuffle_audio", "eval_kinds", "sync_accuracy", "ContrastiveSync"):
        assert word not in source, f"{path} names {word!r}"


def test_unknown_precision_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        train.run(
            tmp_path,
            dataset="x",
            model=train.Model(None, None, None),
            runtime=train.Runtime(precision="fp8"),
        )


# -- the job end to end (in process) --------------------------------------------------------
class _NaNAfter(ContrastiveSync):
    """The contrastive objective, with a NaN loss (and gradients) from step ``nan_step`` on."""

    nan_step = 3

    def compute(self, model, batch, training, step, global_batch=None):  # noqa: D102
        loss, logs = super().compute(model, batch, training, step, global_batch)
        if training:
            loss = loss * tf.where(tf.cast(step, tf.int64) >= self.nan_step, np.nan, 1.0)
        return loss, logs


def _run(model_dir, data_dir, **kwargs):
    """``tiny.train_tiny`` with this module's clip spec, two clips per held-out video and
    non-deterministic ops."""
    return train_tiny(
        model_dir,
        data_dir,
        **{
            "clip_spec": SPEC,
            "evaluation": train.Evaluation(batch_size=4, clips_per_video=2),
            "runtime": train.Runtime(verbose=0),
            **kwargs,
        },
    )


def _scalar_tags(log_dir):
    tags = set()
    for path in log_dir.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_run_writes_outputs_and_a_rerun_resumes_finished(tmp_path, tiny_prepared):
    gin.parse_config("train.Trainer.seed = 0")  # something for operative_config.gin to show
    results = _run(tmp_path, tiny_prepared, checkpoint_every_steps=4)
    assert json.loads((tmp_path / "eval.json").read_text()) == results
    # The saved towers on the same evaluation clips, scored with NumPy, give the same values.
    reference = numpy_sync_accuracy(
        keras.saving.load_model(tmp_path / "video_tower.keras"),
        keras.saving.load_model(tmp_path / "audio_tower.keras"),
        pipeline.eval_dataset(tiny_prepared, 4, spec=SPEC, split="test", clips_per_video=2),
    )
    assert reference["pairs"] == 4  # 2 test videos x 2 clips, each against the other video.
    assert results["sync_accuracy"] == pytest.approx(reference["accuracy"], abs=1e-6)
    assert results["pos_distance"] == pytest.approx(reference["pos_distance"], rel=1e-5)
    assert results["neg_distance"] == pytest.approx(reference["neg_distance"], rel=1e-5)
    for name in ("video_tower.keras", "audio_tower.keras", "operative_config.gin", "run.json"):
        assert (tmp_path / name).is_file()
    assert "Trainer.seed = 0" in (tmp_path / "operative_config.gin").read_text()
    tags = _scalar_tags(tmp_path / "tensorboard")
    for tag in (
        "epoch_loss",
        "epoch_sync_accuracy_easy",
        "epoch_negatives_easy",
        "epoch_curriculum/easy",
        "epoch_learning_rate",
        "epoch_clips_per_second",
    ):
        assert tag in tags, sorted(tags)
    # Checkpoints at batches 4 and 6 (the end), newest two kept.
    index = callbacks.read_index(tmp_path / "checkpoints")
    assert [c.batches for c in index] == [4, 6]
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.h5")) == [
        "ckpt-000000004.weights.h5",
        "ckpt-000000006.weights.h5",
    ]
    # The same call again finds the run finished: no training, same evaluation.
    start = time.monotonic()
    assert _run(tmp_path, tiny_prepared, checkpoint_every_steps=4) == results
    assert [c.batches for c in callbacks.read_index(tmp_path / "checkpoints")] == [4, 6]
    assert time.monotonic() - start < 120


def test_eval_json_leaves_out_a_kind_without_pairs(tmp_path, tiny_prepared):
    # 0.5 s windows on 3 s records: starts range over 2.5 s, which no whole number of
    # 2d-blocks with 0.49 s <= d < 0.5 s tiles, so no test clip has a super-hard negative.
    negatives = {"super_hard": SuperHardNegativeSampler(min_shift_s=0.49)}
    objective = functools.partial(ContrastiveSync, negatives=negatives)
    results = _run(tmp_path, tiny_prepared, objective=objective, train_steps=2)
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written == results
    assert "sync_accuracy" in written and np.isfinite(written["sync_accuracy"])
    assert "sync_accuracy_super_hard" not in written  # not 1.0 from the positives alone


def _overlapping_manifest(data_dir):
    """A manifest whose train and test splits share an id and (under two ids) a file."""
    data_dir.mkdir()
    written = [
        {"id": "a.mp4", "path": "/d/a.mp4", "split": "train"},
        {"id": "a.mp4", "path": "/d/a.mp4", "split": "test"},
        {"id": "b.mp4", "path": "/d/b.mp4", "split": "train"},
        {"id": "b_copy.mp4", "path": "/d/b.mp4", "split": "test"},
        {"id": "c.mp4", "path": "/d/c.mp4", "split": "test"},
    ]
    manifest = {
        "config": {"fps": 8.0, "sample_rate": 16000},
        "written": written,
        "skipped": [],
        "splits": {},
    }
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    return data_dir


def test_run_refuses_train_and_eval_splits_that_share_videos(tmp_path):
    data = _overlapping_manifest(tmp_path / "data")
    with pytest.raises(ValueError, match="share 2 ids or files") as err:
        _run(tmp_path / "run", data)
    message = str(err.value)
    assert "id 'a.mp4' in test, train" in message
    assert "file '/d/b.mp4' (ids 'b.mp4', 'b_copy.mp4') in test, train" in message
    assert "c.mp4" not in message
    assert type(err.value).__name__ == "OverlappingSplits"
    assert not (tmp_path / "run").exists()  # Refused before anything is built or written.


@pytest.mark.slow
def test_train_tool_reports_overlapping_splits_in_one_line(tmp_path):
    data = _overlapping_manifest(tmp_path / "data")
    proc = subprocess.run(
        [
            sys.executable,
            "tools/train.py",
            "--gin_file=gin/quickstart.gin",
            f"--gin_param=train.run.dataset='{data}'",
            f"--model_dir={tmp_path / 'run'}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "id 'a.mp4' in test, train" in last, last
    assert "Traceback" not in proc.stderr


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_last_good_checkpoint(
    tmp_path, tiny_prepared
):
    with pytest.raises(
        FloatingPointError, match=r"batch 4.*non-finite.*last good checkpoint"
    ) as err:
        _run(
            tmp_path,
            tiny_prepared,
            objective=_NaNAfter,
            checkpoint_every_steps=2,
            train_steps=10,
            steps_per_epoch=10,
        )
    assert isinstance(err.value, RunInterrupted)  # the tools: one line, exit 3 (no traceback)
    assert [c.batches for c in callbacks.read_index(tmp_path / "checkpoints")] == [2]
    assert not (tmp_path / "eval.json").exists()
    # The kept checkpoint holds finite values only.
    values = _h5_floats(tmp_path / "checkpoints" / "ckpt-000000002.weights.h5")
    assert values and all(np.all(np.isfinite(v)) for v in values)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_a_non_finite_loss_in_bfloat16_on_cpu_points_to_float32(tmp_path, tiny_prepared, precision):
    with pytest.raises(TrainingDiverged) as err:
        _run(
            tmp_path,
            tiny_prepared,
            objective=_NaNAfter,
            precision=precision,
            checkpoint_every_steps=2,
            train_steps=6,
            steps_per_epoch=6,
        )
    hint = (
        "(on CPU, TensorFlow's oneDNN bfloat16 kernels can return NaN gradients: train "
        "with train.Runtime.precision='float32' in a new --model_dir)"
    )
    first_line = str(err.value).splitlines()[0]
    assert first_line.endswith(hint) == (precision == "mixed_bfloat16"), first_line


class _AllocateTooMuch(keras.callbacks.Callback):
    """Asks TensorFlow for 8 TiB at one batch: a real ``ResourceExhaustedError``."""

    def __init__(self, at_batch: int):
        super().__init__()
        self.at_batch = at_batch
        self.seen = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at_batch:
            tf.zeros([2**41], tf.float32)


@pytest.mark.parametrize(
    ("at_batch", "then"),
    [
        (1, "then re-run with --overwrite (nothing was trained yet)"),
        (4, "then give a new --model_dir (this one keeps the checkpoints trained so far)"),
    ],
)
def test_a_step_out_of_memory_ends_in_one_line_naming_the_batch_size(
    tmp_path, tiny_prepared, at_batch, then
):
    with pytest.raises(UserError) as err:
        _run(
            tmp_path,
            tiny_prepared,
            callbacks=[_AllocateTooMuch(at_batch)],
            checkpoint_every_steps=2,
            train_steps=6,
            steps_per_epoch=6,
        )
    assert str(err.value).splitlines()[0] == (
        "out of memory in a training step, allocating a float tensor of shape "
        "[2199023255552] on CPU:0; lower train.Trainer.batch_size (now 4), use "
        f"train.Runtime.precision='mixed_bfloat16' or a smaller clip, {then}"
    )


def test_an_evaluation_out_of_memory_says_to_lower_its_batch_and_re_run(
    tmp_path, tiny_prepared, monkeypatch
):
    def allocate_too_much(model, job):
        tf.zeros([2**41], tf.float32)

    monkeypatch.setattr(train, "_held_out_metrics", allocate_too_much)
    with pytest.raises(
        UserError,
        match=r"^out of memory in the held-out evaluation, allocating "
        r"a float tensor of shape \[2199023255552\] on CPU:0; lower "
        r"train.Evaluation.batch_size \(now 4\) and re-run the same command",
    ):
        _run(tmp_path, tiny_prepared)
    assert (tmp_path / "video_tower.keras").is_file()  # the trained towers are kept


def _h5_floats(path):
    import h5py

    values = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda _, obj: (
                values.append(obj[()])
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f"
                else None
            )
        )
    return values


# -- callbacks ------------------------------------------------------------------------------
def _dense_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def test_step_checkpoint_saves_atomically_keeps_newest_and_skips_unreadable(tmp_path):
    model = _dense_model()
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32)
    checkpoint = callbacks.StepCheckpoint(tmp_path, every_batches=2, total_batches=5, keep=2)
    model.fit(x, y, batch_size=2, epochs=1, steps_per_epoch=4, callbacks=[checkpoint], verbose=0)
    model.fit(x, y, batch_size=2, epochs=1, steps_per_epoch=1, callbacks=[checkpoint], verbose=0)
    assert [c.batches for c in callbacks.read_index(tmp_path)] == [4, 5]
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]  # no temporary left behind
    final = [w.numpy().copy() for w in model.weights]

    fresh = _dense_model()
    assert callbacks.restore_latest(fresh, tmp_path).batches == 5
    for a, b in zip(final, fresh.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    assert int(fresh.optimizer.iterations.numpy()) == 5

    (tmp_path / "ckpt-000000005.weights.h5").write_bytes(b"torn write")
    assert callbacks.restore_latest(_dense_model(), tmp_path).batches == 4
    assert callbacks.restore_latest(_dense_model(), tmp_path / "none") is None


class _FakeClock:
    """Stands in for the ``time`` module of ``avts_tf.callbacks``: ``perf_counter`` replays."""

    def __init__(self, times):
        self.times = iter(times)

    def perf_counter(self):
        return next(self.times)

    def __getattr__(self, name):
        return getattr(time, name)


class _BatchLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(logs["clips_per_second"])


def test_clips_per_second_is_batch_size_over_the_measured_time(monkeypatch):
    # Epoch 1 begins at 0 s, its 4 batches end at 1 s (tracing), 1.5, 2.0, 2.5; epoch 2
    # begins at 10 s and its batches end every 0.25 s.
    monkeypatch.setattr(
        callbacks, "time", _FakeClock([0.0, 1.0, 1.5, 2.0, 2.5, 10.0, 10.25, 10.5, 10.75, 11.0])
    )
    model = _dense_model()
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32)
    batch_logs = _BatchLogs()
    history = model.fit(
        x, y, batch_size=2, epochs=2, verbose=0, callbacks=[callbacks.ClipsPerSecond(2), batch_logs]
    )
    # Per batch: 2 clips over the time since the previous batch (or the epoch's start).
    assert batch_logs.rates == [2 / 1.0, 2 / 0.5, 2 / 0.5, 2 / 0.5] + [2 / 0.25] * 4
    # Per epoch: the clips of batches 2-4 over the time from the end of batch 1 to the end.
    assert history.history["clips_per_second"] == [3 * 2 / 1.5, 3 * 2 / 0.75]


def test_weights_digest_changes_with_weights():
    model = _dense_model()
    before = callbacks.weights_digest(model)
    assert callbacks.weights_digest(model) == before
    model.weights[0].assign(model.weights[0] + 1.0)
    assert callbacks.weights_digest(model) != before


# -- roles ----------------------------------------------------------------------------------
def test_chief_is_the_chief_task_or_worker_0(monkeypatch):
    assert WorkerRole().is_chief
    assert WorkerRole("worker", 0, 2).is_chief
    assert not WorkerRole("worker", 1, 2).is_chief
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}}))
    assert WorkerRole("chief", 0, 2).is_chief
    assert not WorkerRole("worker", 0, 2).is_chief


def _event_scalars(log_dir):
    found = {}
    for path in log_dir.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    return found


def test_periodic_evaluation_writes_validation_curves_and_changes_nothing(tmp_path, tiny_prepared):
    runtime = train.Runtime(verbose=0, deterministic=True)
    plain = _run(tmp_path / "plain", tiny_prepared, runtime=runtime)
    watched = _run(tmp_path / "watched", tiny_prepared, runtime=runtime, eval_every_steps=3)
    assert watched == plain  # same final evaluation ...
    for name in ("video_tower.keras", "audio_tower.keras"):  # ... from the same weights
        for a, b in zip(
            keras.saving.load_model(tmp_path / "plain" / name).weights,
            keras.saving.load_model(tmp_path / "watched" / name).weights,
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
    scalars = _event_scalars(tmp_path / "watched" / "tensorboard" / "validation")
    # Epochs 0 and 1 (3 batches each): after batch 6 the weights are the final ones.
    assert {step for tag, step in scalars if tag == "epoch_sync_accuracy"} == {0, 1}
    assert scalars[("epoch_sync_accuracy", 1)] == pytest.approx(plain["sync_accuracy"], abs=1e-6)
    assert not (tmp_path / "plain" / "tensorboard" / "validation").exists()
