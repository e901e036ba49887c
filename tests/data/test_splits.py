"""Disjoint splits: ingestion and training refuse a file or id in two splits (data.splits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avts_tf.data.ingestion import prepare, sources

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["path,label,split"] + [",".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def overlap_error():
    from avts_tf.data import splits  # Imported where the check is used.

    return splits.OverlappingSplits


def test_ingest_refuses_a_file_listed_in_train_and_test(tmp_path):
    csv_path = write_csv(
        tmp_path / "list.csv",
        [
            ("a.mp4", "cat", "train"),
            ("b.mp4", "dog", "train"),
            ("c.mp4", "dog", "test"),
            ("a.mp4", "cat", "test"),
        ],
    )
    with pytest.raises(ValueError, match=r"1 id or file .*'a\.mp4' in test, train") as err:
        prepare.prepare_dataset(
            csv_path, tmp_path / "out", options=prepare.RunOptions(progress=False)
        )
    assert isinstance(err.value, overlap_error())
    assert "b.mp4" not in str(err.value) and "c.mp4" not in str(err.value)
    assert not (tmp_path / "out").exists()  # Refused before anything is written.


def test_ingest_refuses_one_file_under_two_names(tmp_path):
    """A symlink (or ``x/../a.mp4``) is the same file: its real path is compared."""
    root = tmp_path.resolve()
    (root / "a.mp4").write_bytes(b"not decoded")
    os.symlink(root / "a.mp4", root / "copy.mp4")
    csv_path = write_csv(
        root / "list.csv",
        [  # An absolute path is kept as written.
            ("a.mp4", "cat", "train"),
            (str(root / "copy.mp4"), "cat", "test"),
            ("sub/../b.mp4", "dog", "test"),
            ("b.mp4", "dog", "train"),
        ],
    )
    with pytest.raises(overlap_error()) as err:
        prepare.prepare_dataset(csv_path, root / "out", options=prepare.RunOptions(progress=False))
    message = str(err.value)
    assert "2 ids or files" in message
    assert f"file {str(root / 'a.mp4')!r} (ids 'a.mp4', 'copy.mp4') in test, train" in message
    assert "id 'b.mp4' in test, train" in message


def test_ingest_names_five_offenders_and_counts_all(tmp_path):
    rows = [(f"v{i}.mp4", "x", split) for i in range(7) for split in ("train", "val")]
    rows.append(("only.mp4", "x", "test"))
    with pytest.raises(overlap_error()) as err:
        prepare.prepare_dataset(
            write_csv(tmp_path / "l.csv", rows),
            tmp_path / "o",
            options=prepare.RunOptions(progress=False),
        )
    message = str(err.value)
    assert message.count("in train, val") == 5
    assert "7 ids or files" in message and "and 2 more" in message
    assert "'v0.mp4'" in message and "'v5.mp4'" not in message and "only.mp4" not in message
    assert "\n" not in message


def test_cuts_of_one_file_in_one_split_are_fine(tmp_path):
    from avts_tf.data import splits

    items = [
        sources.SourceItem("/d/a.mp4", "a_0", "x", "train", 0.0, 5.0),
        sources.SourceItem("/d/a.mp4", "a_5", "x", "train", 5.0, 10.0),
        sources.SourceItem("/d/b.mp4", "b", "x", "test"),
    ]
    splits.check_disjoint(items, source="list")
    # The same cuts across two splits share the file: refused.
    moved = [*items[:1], sources.SourceItem("/d/a.mp4", "a_5", "x", "test", 5.0, 10.0)]
    with pytest.raises(splits.OverlappingSplits, match=r"file '/d/a\.mp4' \(ids 'a_0', 'a_5'\)"):
        splits.check_disjoint(moved, source="list")


def test_prepare_data_tool_reports_one_line(tmp_path):
    csv_path = write_csv(tmp_path / "l.csv", [("a.mp4", "x", "train"), ("a.mp4", "x", "test")])
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tools" / "prepare_data.py"),
            "--input",
            str(csv_path),
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "'a.mp4' in test, train" in last
    assert "Traceback" not in proc.stderr


def write_manifest(data_dir: Path, written: list[dict]) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "config": {"fps": 8.0, "sample_rate": 16000},
        "written": written,
        "skipped": [],
        "splits": {},
    }
    (data_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return data_dir


def test_manifest_check_compares_only_the_two_splits(tmp_path):
    from avts_tf.data import splits

    data = write_manifest(
        tmp_path / "d",
        [
            {"id": "a.mp4", "path": "/d/a.mp4", "split": "train"},
            {"id": "a.mp4", "path": "/d/a.mp4", "split": "val"},
            {"id": "b.mp4", "path": "/d/b.mp4", "split": "test"},
            {"id": "renamed.mp4", "path": "/d/b.mp4", "split": "val"},
        ],
    )
    splits.check_manifest(data, "train", "test")  # val is neither.
    with pytest.raises(splits.OverlappingSplits, match=r"id 'a\.mp4' in train, val"):
        splits.check_manifest(data, "train", "val")
    with pytest.raises(
        splits.OverlappingSplits,
        match=r"file '/d/b\.mp4' \(ids 'b\.mp4', 'renamed\.mp4'\) in test, val",
    ):
        splits.check_manifest(data, "val", "test")
    splits.check_manifest(data, "train", "train")  # Evaluating on the training split.
