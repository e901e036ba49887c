"""prepare_data on own inputs: held-out split, one file, foreign folders, nothing written."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from test_ingest import write_clip
from tiny import REPO_ROOT

from avts_tf.data.ingestion import prepare, sources
from avts_tf.data.manifest import Manifest


def _prepare_cli(*args, timeout=170):
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "prepare_data.py"), *args],
                          capture_output=True, text=True, timeout=timeout)


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0]
    return errors[0]


def test_held_out_split_is_stratified_and_decided_by_a_hash_of_the_path():
    items = [sources.SourceItem(f"/x/{label}/{i}.mp4", f"{label}/{i}.mp4", label)
             for label, count in (("cat", 10), ("dog", 3), ("eel", 1)) for i in range(count)]
    split = sources.held_out_split(items, 0.1)
    test = {it.id for it in split if it.split == "test"}

    def first_by_hash(label, n):
        ids = [it.id for it in items if it.label == label]
        return set(sorted(ids, key=lambda i: hashlib.sha1(i.encode()).hexdigest())[:n])

    # 10% of 10 = 1; of 3 -> at least one; a label of one file keeps it for training.
    assert test == first_by_hash("cat", 1) | first_by_hash("dog", 1)
    assert sources.held_out_split(list(reversed(items)), 0.1) == split  # order-independent
    assert {it.id for it in sources.held_out_split(items, 0.3) if it.split == "test"} == (
        first_by_hash("cat", 3) | first_by_hash("dog", 1))
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\), got 1.5"):
        sources.held_out_split(items, 1.5)


def test_folder_input_gets_a_test_split_and_one_file_works(tmp_path):
    for label in ("indoor", "outdoor"):
        for i in range(3):
            write_clip(tmp_path / "in" / label / f"{i}.mkv")
    proc = _prepare_cli("--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                        "--fps", "4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = Manifest.read(tmp_path / "out")
    assert manifest.num_records("test") == 2 and manifest.num_records("train") == 4
    assert {e.label for e in manifest.records("test")} == {"indoor", "outdoor"}
    assert manifest.config.test_fraction == 0.1
    single = prepare.prepare_dataset(tmp_path / "in" / "indoor" / "0.mkv", tmp_path / "one",
                                     fps=4.0, progress=False)
    assert [(e.id, e.split) for e in single.written] == [("0.mkv", "train")]


def test_foreign_output_folder_is_refused_and_kept(tmp_path):
    write_clip(tmp_path / "in" / "a" / "x.mkv")
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "manifest.json").write_text('{"not": "ours"}')
    (out / "notes.txt").write_text("mine")
    line = _one_error_line(_prepare_cli("--input", str(tmp_path / "in"), "--output", str(out)))
    assert line == (f"error: output {out} already holds files that are not a dataset of avts_tf "
                    "(manifest.json, notes.txt); give an empty or new --output, or --overwrite "
                    "to write into it anyway")
    assert (out / "manifest.json").read_text() == '{"not": "ours"}'
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "notes.txt"]
    target = tmp_path / "a_file"
    target.write_text("x")
    line = _one_error_line(_prepare_cli("--input", str(tmp_path / "in"), "--output", str(target)))
    assert line.startswith(f"error: output {target} is a file, not a folder")


def test_bad_settings_and_empty_results_end_in_one_line(tmp_path):
    write_clip(tmp_path / "in" / "a" / "x.mkv", audio=False)
    for flag, value in (("--fps", "0"), ("--sample_rate", "-5"), ("--short_side", "0"),
                        ("--jpeg_quality", "0")):
        line = _one_error_line(_prepare_cli("--input", str(tmp_path / "in"), "--output",
                                            str(tmp_path / "out"), flag, value))
        assert flag.lstrip("-") in line and "see --helpshort" in line
        assert not (tmp_path / "out").exists()  # checked before anything is written
    line = _one_error_line(_prepare_cli("--input", str(tmp_path / "in"), "--output",
                                        str(tmp_path / "out")))
    assert line == ("error: nothing was written (1 no_audio); video-only inputs need "
                    "--allow_missing_audio")
