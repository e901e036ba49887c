"""A full disk at a checkpoint or a tower write: the last good state stays, one line, resume."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from tiny import tower_weights, train_tiny

from avts_tf import callbacks
from avts_tf.errors import RunInterrupted


def _run(model_dir, data_dir, **kwargs):
    return train_tiny(model_dir, data_dir, **{"checkpoint_every_steps": 2, **kwargs})


def _full_disk_on(monkeypatch, cls, method, calls_before):
    """``cls.method`` writes half a file and raises ENOSPC after ``calls_before`` calls."""
    original = getattr(cls, method)
    count = {"n": 0}

    def failing(self, path, *args, **kwargs):
        count["n"] += 1
        if count["n"] > calls_before:
            with open(path, "wb") as f:
                f.write(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(cls, method, failing)


def test_full_disk_at_a_checkpoint_keeps_the_last_one_and_the_rerun_resumes(
    tmp_path, tiny_prepared, monkeypatch
):
    whole = _run(tmp_path / "whole", tiny_prepared)
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _full_disk_on(patch, keras.Model, "save_weights", calls_before=1)  # batch 2 saves
        with pytest.raises(RunInterrupted) as err:
            _run(run, tiny_prepared)
    assert str(err.value).splitlines()[0] == (
        f"could not write checkpoint {run / 'checkpoints' / 'ckpt-000000004.weights.h5'}: No "
        "space left on device; free space or fix the folder, then re-run the same command to "
        "resume from the last checkpoint (batch 2)"
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "checkpoint.json",
        "ckpt-000000002.weights.h5",
    ]  # no partial file
    assert [c.batches for c in callbacks.read_index(run / "checkpoints")] == [2]
    assert dict(_run(run, tiny_prepared)) == dict(whole)  # space freed: the same call goes on
    for a, b in zip(tower_weights(run), tower_weights(tmp_path / "whole"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_full_disk_at_the_towers_leaves_no_partial_file(tmp_path, tiny_prepared, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _full_disk_on(patch, keras.Model, "save", calls_before=0)
        with pytest.raises(
            RunInterrupted,
            match=r"could not write .*video_tower.keras: No space "
            r"left on device; free space",
        ):
            _run(run, tiny_prepared)
    assert not [p.name for p in run.iterdir() if p.suffix == ".keras" or "partial" in p.name]
    assert [c.batches for c in callbacks.read_index(run / "checkpoints")] == [4, 6]
    results = _run(run, tiny_prepared)  # nothing left to train: saves and evaluates
    assert (run / "video_tower.keras").is_file() and "sync_accuracy" in results


def test_a_corrupted_record_names_its_shard_offset_and_the_fix(tmp_path, tiny_prepared):
    import shutil

    from avts_tf.data import integrity

    data = tmp_path / "data"
    shutil.copytree(tiny_prepared, data)
    (shard,) = data.glob("train-*.tfrecord")
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one byte flipped inside a record's data
    shard.write_bytes(bytes(raw))
    problems = integrity.check_shards(data)
    assert len(problems) == 1 and problems[0].file == str(shard)
    offset = problems[0].offset
    assert 0 < offset < len(raw) // 2  # the record holding the flipped byte starts before it
    with pytest.raises(RunInterrupted) as err:
        _run(tmp_path / "run", data, checkpoint_every_steps=1)
    message = str(err.value).splitlines()[0]
    assert message.startswith(
        f"corrupted record in {shard}: corrupted record at byte {offset} after "
    )
    assert re.search(
        rf"; rebuild the bad shards with avts-prepare --verify --output {data}, "
        r"then re-run the same command to resume from the last checkpoint "
        r"\((the start|batch \d+)\) \(or train past it: "
        r"data.train_dataset.skip_corrupted=True\)$",
        message,
    ), message
    assert integrity.check_shards(tiny_prepared) == []
    # avts-prepare --verify finds the shard and rebuilds it from its source files.
    import subprocess
    import sys

    from tiny import REPO_ROOT

    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tools" / "prepare_data.py"),
            "--verify",
            f"--output={data}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[:1] == [
        f"bad shard {shard}: corrupted record at byte {offset} after 2 good record(s)"
    ]
    assert proc.stdout.strip().splitlines()[-1] == (
        f"verify: 1 bad shard(s) rebuilt; every shard of {data} reads back as its manifest says"
    )
    assert integrity.check_shards(data) == []
    assert shard.read_bytes() == (tiny_prepared / shard.name).read_bytes()
    shard.write_bytes(bytes(raw))  # corrupted again, for the skipping run
    import gin

    gin.bind_parameter("data.train_dataset.skip_corrupted", True)
    results = _run(tmp_path / "skipping", data)  # trains on the readable records
    assert (tmp_path / "skipping" / "video_tower.keras").is_file() and "sync_accuracy" in results


_FULL_DISK_PREPARE = """
import os, sys
from avts_tf.data.ingestion import prepare
original = prepare._ShardWriter.__init__
full_shard = sys.argv.pop(1)
def full_disk_at_shard(self, out, plan, config):
    # Shard 1 of train is written to /dev/full: the OS answers ENOSPC.
    original(self, out, plan, config)
    if plan.name.startswith(full_shard):
        self.writer.close()
        os.unlink(self.tmp)
        os.symlink("/dev/full", self.tmp)
        import tensorflow as tf
        self.writer = tf.io.TFRecordWriter(str(self.tmp))
prepare._ShardWriter.__init__ = full_disk_at_shard
from avts_tf.cli.prepare import main
main()
"""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full for a real ENOSPC")
def test_full_disk_at_a_shard_keeps_the_complete_shards_and_the_rerun_finishes(
    tmp_path, tiny_prepared
):
    (videos,) = (tiny_prepared.parent / "videos").glob("*.csv")
    args = [f"--input={videos}", "--num_shards=2", "--fps=8", "--short_side=32"]
    whole = tmp_path / "whole"
    subprocess.run(
        [sys.executable, "-m", "avts_tf.cli.prepare", *args, f"--output={whole}"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    out = tmp_path / "out"
    failed = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_PREPARE, "train-00001", *args, f"--output={out}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 3, failed.stderr[-2000:]
    assert failed.stderr.strip().splitlines()[-1] == (
        f"error: could not write shard {out / 'train-00001-of-00002.tfrecord'}: No space left "
        "on device; free space or fix the folder, then re-run the same command: the shards "
        "already complete are kept"
    )
    assert "Traceback" not in failed.stderr
    # The shards before it are complete and equal to the uninterrupted run's; nothing partial.
    kept = sorted(p.name for p in out.glob("*.tfrecord"))
    assert kept == [
        "test-00000-of-00002.tfrecord",
        "test-00001-of-00002.tfrecord",
        "train-00000-of-00002.tfrecord",
    ]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") or "tmp" in p.name) == [
        ".ingest"
    ]
    assert sorted(p.name for p in (out / ".ingest").iterdir()) == sorted(
        ["config.json", "lock"] + [f"{name}.json" for name in kept]
    )
    for name in kept:
        assert (out / name).read_bytes() == (whole / name).read_bytes()
    # Space freed: the same command writes the rest and ends equal to the uninterrupted run.
    rerun = subprocess.run(
        [sys.executable, "-m", "avts_tf.cli.prepare", *args, f"--output={out}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming, 3/4 shards already complete" in rerun.stderr
    for path in sorted(whole.glob("*.tfrecord")) + [whole / "manifest.json"]:
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name
