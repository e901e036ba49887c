"""SIGTERM / SIGINT: a checkpoint at the batch reached, exit 0, and an exact resume."""

from __future__ import annotations

import os
import signal

import keras
import numpy as np
import pytest
from tiny import tower_weights, train_tiny

from avts_tf import callbacks
from avts_tf.preemption import PreemptionWatcher


class _SignalAt(keras.callbacks.Callback):
    """Sends ``signum`` to this process at the end of (0-based, this fit's) batch ``at``."""

    def __init__(self, at: int, signum: int) -> None:
        super().__init__()
        self.at, self.signum, self.seen = at, signum, 0

    def on_train_batch_end(self, batch, logs=None):
        if self.seen == self.at:
            os.kill(os.getpid(), self.signum)
        self.seen += 1


def _run(model_dir, data_dir, **kwargs):
    return train_tiny(model_dir, data_dir, **{"train_steps": 8, "steps_per_epoch": 4, **kwargs})


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_checkpoints_the_batch_reached_and_the_rerun_resumes_exactly(
    tmp_path, tiny_prepared, signum
):
    whole = _run(tmp_path / "whole", tiny_prepared)
    run = tmp_path / "run"
    before = signal.getsignal(signum)  # SIG_IGN for SIGINT in a background shell job
    # Signalled at the end of batch 3 (1-based), after this batch's checks: stops after 4.
    stopped = _run(run, tiny_prepared, callbacks=[_SignalAt(2, signum)])
    assert stopped.preempted_at == 4 and dict(stopped) == {}
    assert [c.batches for c in callbacks.read_index(run / "checkpoints")] == [4]
    assert not (run / "video_tower.keras").exists() and not (run / "eval.json").exists()
    assert before is not None and signal.getsignal(signum) == before  # handler restored
    resumed = _run(run, tiny_prepared)
    assert resumed.preempted_at is None and dict(resumed) == dict(whole)
    for a, b in zip(tower_weights(run), tower_weights(tmp_path / "whole"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_watcher_restores_the_handlers_and_a_second_signal_is_not_caught():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionWatcher() as watcher:
        assert signal.getsignal(signal.SIGTERM) == watcher._handle
        watcher._handle(signal.SIGTERM, None)
        assert watcher.requested and watcher.received == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == before  # a second SIGTERM: default
    assert signal.getsignal(signal.SIGTERM) == before


def _wait_for_checkpoint(model_dir, batches, processes, timeout=300):
    import time

    import kill9

    deadline = time.monotonic() + timeout
    while kill9.checkpointed_batches(model_dir) < batches:
        assert all(p.poll() is None for p in processes), "a worker ended before the signal"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_workers_stop_at_the_same_batch_when_one_is_signalled(tmp_path, tiny_prepared):
    import re

    import workers

    params = [
        "train.run.dataset = @data.prepared_dataset()",
        f"data.prepared_dataset.data_dir = '{tiny_prepared}'",
        "backbones.mc3_18.width = 4",
        "backbones.avts_audio_vgg.width = 4",
        "train.Trainer.batch_size = 8",
        "train.Trainer.train_steps = 400",
        "train.Trainer.steps_per_epoch = 100",
        "train.Trainer.checkpoint_every_steps = 2",
        "train.Evaluation.batch_size = 4",
        "train.Evaluation.clips_per_video = 2",
        "train.Runtime.verbose = 2",
    ]
    run = tmp_path / "run"  # both workers see the chief's model_dir (a shared folder)

    def args(index):
        return [
            "--gin_file=gin/quickstart.gin",
            f"--model_dir={run}",
            *[f"--gin_param={p}" for p in params],
        ]

    processes = workers.start(2, args)
    try:
        _wait_for_checkpoint(run, 2, processes)
        processes[1].send_signal(signal.SIGTERM)  # only worker 1 is preempted
    finally:
        outputs = workers.finish(processes)
    for index, process in enumerate(processes):
        assert process.returncode == 0, f"worker {index}:\n{outputs[index][1][-4000:]}"
    lines = [out.strip().splitlines()[-1] for out, _ in outputs]
    batch = int(
        re.fullmatch(
            r"preempted at batch (\d+); re-run the same command to resume", lines[0]
        ).group(1)
    )
    assert lines[1] == lines[0]  # the same batch on both workers
    assert 2 <= batch < 400
    assert max(c.batches for c in callbacks.read_index(run / "checkpoints")) == batch
    assert not (run / "eval.json").exists()
