"""A full disk at a checkpoint or a tower write: the last good state stays, one line, resume."""

from __future__ import annotations

import errno
import re

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
        tmp_path, tiny_prepared, monkeypatch):
    whole = _run(tmp_path / "whole", tiny_prepared)
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _full_disk_on(patch, keras.Model, "save_weights", calls_before=1)  # batch 2 saves
        with pytest.raises(RunInterrupted) as err:
            _run(run, tiny_prepared)
    assert str(err.value).splitlines()[0] == (
        f"could not write checkpoint {run / 'checkpoints' / 'ckpt-000000004.weights.h5'}: No "
        "space left on device; free space or fix the folder, then re-run the same command to "
        "resume from the last checkpoint (batch 2)")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "checkpoint.json", "ckpt-000000002.weights.h5"]  # no partial file
    assert [c.batches for c in callbacks.read_index(run / "checkpoints")] == [2]
    assert dict(_run(run, tiny_prepared)) == dict(whole)  # space freed: the same call goes on
    for a, b in zip(tower_weights(run), tower_weights(tmp_path / "whole"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_full_disk_at_the_towers_leaves_no_partial_file(tmp_path, tiny_prepared, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _full_disk_on(patch, keras.Model, "save", calls_before=0)
        with pytest.raises(RunInterrupted, match=r"could not write .*video_tower.keras: No space "
                                                 r"left on device; free space"):
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
    assert message.startswith(f"corrupted record in {shard}: corrupted record at byte {offset} "
                              "after ")
    assert re.search(rf"; rebuild the bad shards with avts-prepare --verify --output {data}, "
                     r"then re-run the same command to resume from the last checkpoint "
                     r"\((the start|batch \d+)\) \(or train past it: "
                     r"data.train_dataset.skip_corrupted=True\)$", message), message
    assert integrity.check_shards(tiny_prepared) == []
    # avts-prepare --verify finds the shard and rebuilds it from its source files.
    import subprocess
    import sys

    from tiny import REPO_ROOT

    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "prepare_data.py"),
                           "--verify", f"--output={data}"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[:1] == [
        f"bad shard {shard}: corrupted record at byte {offset} after 2 good record(s)"]
    assert proc.stdout.strip().splitlines()[-1] == (
        f"verify: 1 bad shard(s) rebuilt; every shard of {data} reads back as its manifest says")
    assert integrity.check_shards(data) == []
    assert shard.read_bytes() == (tiny_prepared / shard.name).read_bytes()
    shard.write_bytes(bytes(raw))  # corrupted again, for the skipping run
    import gin

    gin.bind_parameter("data.train_dataset.skip_corrupted", True)
    results = _run(tmp_path / "skipping", data)  # trains on the readable records
    assert (tmp_path / "skipping" / "video_tower.keras").is_file() and "sync_accuracy" in results
