"""A lost worker: the survivor stops with one line; the re-run on every worker resumes."""

from __future__ import annotations

import re
import time

import kill9
import pytest
import workers

from avts_tf import callbacks


def _params(tiny_prepared, steps):
    return [
        "train.run.dataset = @data.prepared_dataset()",
        f"data.prepared_dataset.data_dir = '{tiny_prepared}'",
        "backbones.mc3_18.width = 4",
        "backbones.avts_audio_vgg.width = 4",
        "train.Trainer.batch_size = 8",
        f"train.Trainer.train_steps = {steps}",
        "train.Trainer.steps_per_epoch = 20",
        "train.Trainer.checkpoint_every_steps = 2",
        "train.Evaluation.batch_size = 4",
        "train.Evaluation.clips_per_video = 2",
        "train.Runtime.verbose = 2",
    ]


@pytest.mark.slow
def test_survivor_names_the_lost_worker_and_the_rerun_resumes(tmp_path, tiny_prepared):
    run = tmp_path / "run"

    def args(index):
        return [
            "--gin_file=gin/quickstart.gin",
            f"--model_dir={run}",
            *[f"--gin_param={p}" for p in _params(tiny_prepared, 200)],
        ]

    processes = workers.start(2, args)
    try:
        deadline = time.monotonic() + 300
        while kill9.checkpointed_batches(run) < 2:
            assert all(p.poll() is None for p in processes) and time.monotonic() < deadline
            time.sleep(0.05)
        processes[1].kill()  # kill -9: no goodbye
        killed_at = time.monotonic()
        processes[0].wait(timeout=120)
        stopped_after = time.monotonic() - killed_at
    finally:
        outputs = workers.finish(processes)
    assert processes[0].returncode == 3, outputs[0][1][-3000:]
    assert stopped_after < 60
    assert "Traceback" not in outputs[0][1]
    last = outputs[0][1].strip().splitlines()[-1]
    saved = max(c.batches for c in callbacks.read_index(run / "checkpoints"))
    assert re.fullmatch(
        r"error: lost worker worker 1 \(\w+Error: [^)]+\); re-run the same command on every "
        rf"worker to resume from the last checkpoint \(batch {saved}\)",
        last,
    ), last
    # The same command on every worker (here with a shorter schedule) resumes from there.
    rerun = workers.finish(
        workers.start(
            2,
            lambda index: [
                "--gin_file=gin/quickstart.gin",
                f"--model_dir={run}",
                *[f"--gin_param={p}" for p in _params(tiny_prepared, saved + 4)],
            ],
        )
    )
    for out, err in rerun:
        assert out.strip().splitlines()[-1].startswith("sync_accuracy: "), err[-3000:]
        assert f"ckpt-{saved:09d}.weights.h5: batch {saved}," in err
