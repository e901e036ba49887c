"""Atomic writes: whole files or none, local and through tf.io.gfile."""

import json
import os

import pytest

from avts_tf import atomic


def test_write_json_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "eval.json"
    atomic.write_json(path, {"b": 1, "a": "é"})
    atomic.write_json(path, {"b": 2, "a": "é"}, indent=1, ensure_ascii=False)
    assert path.read_text(encoding="utf-8") == '{\n "a": "é",\n "b": 2\n}\n'
    assert sorted(os.listdir(path.parent)) == ["eval.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "index.json"
    atomic.write_text(path, "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["index.json"]  # the temporary file is gone


def test_remote_paths_go_through_gfile(tmp_path):
    # TensorFlow's in-memory file system stands in for gs://.
    path = "ram://avts_tf_atomic_test/run/eval.json"
    atomic.write_json(path, {"sync_accuracy": 0.5})
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as f:
        assert json.load(f) == {"sync_accuracy": 0.5}
    assert tf.io.gfile.listdir("ram://avts_tf_atomic_test/run") == ["eval.json"]
