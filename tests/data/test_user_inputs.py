"""prepare_data on own inputs: held-out split, one file, foreign folders, nothing written."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from checks import error_line_of
from test_ingest import misbehaving_worker, write_clip
from tiny import REPO_ROOT

from avts_tf.data.ingestion import prepare, sources
from avts_tf.data.manifest import IngestConfig, Manifest


def _prepare_cli(*args, timeout=170):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "prepare_data.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_held_out_split_is_stratified_and_decided_by_a_hash_of_the_path():
    items = [
        sources.SourceItem(f"/x/{label}/{i}.mp4", f"{label}/{i}.mp4", label)
        for label, count in (("cat", 10), ("dog", 3), ("eel", 1))
        for i in range(count)
    ]
    split = sources.held_out_split(items, 0.1)
    test = {it.id for it in split if it.split == "test"}

    def first_by_hash(label, n):
        ids = [it.id for it in items if it.label == label]
        return set(sorted(ids, key=lambda i: hashlib.sha1(i.encode()).hexdigest())[:n])

    # 10% of 10 = 1; of 3 -> at least one; a label of one file keeps it for training.
    assert test == first_by_hash("cat", 1) | first_by_hash("dog", 1)
    assert sources.held_out_split(list(reversed(items)), 0.1) == split  # order-independent
    assert {it.id for it in sources.held_out_split(items, 0.3) if it.split == "test"} == (
        first_by_hash("cat", 3) | first_by_hash("dog", 1)
    )
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\), got 1.5"):
        sources.held_out_split(items, 1.5)


def _by_hash(ids):
    return sorted(ids, key=lambda i: hashlib.sha1(i.encode()).hexdigest())


def test_held_out_picks_pass_over_files_ingestion_would_skip():
    cat = [f"cat/{i}.mp4" for i in range(10)]
    items = [
        sources.SourceItem(f"/x/{i}", i, i.split("/")[0])
        for i in (*cat, "dog/a.mp4", "dog/notes.txt")
    ]
    skipped = {_by_hash(cat)[0], "dog/notes.txt"}
    asked = []

    def usable(item):
        asked.append(item.id)
        return item.id not in skipped

    split = sources.held_out_split(items, 0.1, usable)
    # cat: the first by hash would be skipped, the next is held out; dog: its only usable
    # file stays in train (a README is no held-out video).
    assert {it.id for it in split if it.split == "test"} == {_by_hash(cat)[1]}
    # Asked in rank order, only until the pick and one usable file for train were found.
    assert [i for i in asked if i.startswith("cat")] == _by_hash(cat)[:3]
    assert sorted(i for i in asked if i.startswith("dog")) == ["dog/a.mp4", "dog/notes.txt"]


def test_a_held_out_file_without_the_required_sound_is_replaced_by_the_next(tmp_path):
    """A held-out file without audio is skipped and the next file by hash is held out
    instead, so the test split is not left empty (avts-train refuses a dataset whose test
    split is empty, as a small set holding out one silent file would have)."""
    ids = _by_hash([f"street/{i}.mkv" for i in range(4)])
    for rank, name in enumerate(ids):
        write_clip(tmp_path / "in" / name, audio=rank > 0, level=40 * rank + 20)
    manifest = prepare.prepare_dataset(
        tmp_path / "in",
        tmp_path / "out",
        IngestConfig(fps=4, test_fraction=0.1),
        options=prepare.RunOptions(progress=False),
    )
    assert [e.id for e in manifest.written if e.split == "test"] == [ids[1]]
    assert [(e.id, e.split, e.kind) for e in manifest.skipped] == [(ids[0], "train", "no_audio")]


def test_folder_input_gets_a_test_split_and_one_file_works(tmp_path):
    for label in ("indoor", "outdoor"):
        for i in range(3):
            write_clip(tmp_path / "in" / label / f"{i}.mkv")
    proc = _prepare_cli(
        "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--fps", "4"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = Manifest.read(tmp_path / "out")
    assert manifest.num_records("test") == 2 and manifest.num_records("train") == 4
    assert {e.label for e in manifest.records("test")} == {"indoor", "outdoor"}
    assert manifest.config.test_fraction == 0.1
    single = prepare.prepare_dataset(
        tmp_path / "in" / "indoor" / "0.mkv",
        tmp_path / "one",
        IngestConfig(fps=4.0),
        options=prepare.RunOptions(progress=False),
    )
    assert [(e.id, e.split) for e in single.written] == [("0.mkv", "train")]


def test_foreign_output_folder_is_refused_and_kept(tmp_path):
    write_clip(tmp_path / "in" / "a" / "x.mkv")
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "manifest.json").write_text('{"not": "ours"}')
    (out / "notes.txt").write_text("mine")
    line = error_line_of(_prepare_cli("--input", str(tmp_path / "in"), "--output", str(out)))
    assert line == (
        f"error: output {out} already holds files that are not a dataset of avts_tf "
        "(manifest.json, notes.txt); give an empty or new --output, or --overwrite "
        "to write into it anyway"
    )
    assert (out / "manifest.json").read_text() == '{"not": "ours"}'
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "notes.txt"]
    target = tmp_path / "a_file"
    target.write_text("x")
    line = error_line_of(_prepare_cli("--input", str(tmp_path / "in"), "--output", str(target)))
    assert line.startswith(f"error: output {target} is a file, not a folder")


def test_bad_settings_and_empty_results_end_in_one_line(tmp_path):
    write_clip(tmp_path / "in" / "a" / "x.mkv", audio=False)
    for flag, value in (
        ("--fps", "0"),
        ("--sample_rate", "-5"),
        ("--short_side", "0"),
        ("--jpeg_quality", "0"),
    ):
        line = error_line_of(
            _prepare_cli(
                "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), flag, value
            )
        )
        assert flag.lstrip("-") in line and "see --helpshort" in line
        assert not (tmp_path / "out").exists()  # checked before anything is written
    line = error_line_of(
        _prepare_cli(
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--max_record_s",
            "10",
            "--record_overlap_s",
            "10",
        )
    )
    assert line == (
        "error: record overlap 10.0 s must be at least 0 and shorter than the "
        "longest record, 10.0 s; give a --record_overlap_s below --max_record_s"
    )
    assert not (tmp_path / "out").exists()
    line = error_line_of(
        _prepare_cli("--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"))
    )
    assert line == (
        "error: nothing was written (1 no_audio); video-only inputs need --allow_missing_audio"
    )


def _snapshot(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _write_wav(path, seconds=0.5, rate=0.05):
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        stream = c.add_stream("pcm_s16le", rate=16000, layout="mono")
        pcm = (np.sin(np.arange(round(seconds * 16000)) * rate) * 1000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        c.mux(stream.encode(frame))
        c.mux(stream.encode())
    return path


def test_symlink_loops_end_and_a_file_is_ingested_once(tmp_path):
    root = tmp_path / "in"
    write_clip(root / "a" / "x.mkv")
    write_clip(root / "b" / "y.mkv", level=200)
    (root / "a" / "loop").symlink_to(root / "a")  # a loop
    (root / "b" / "up").symlink_to(root)  # a link to a parent folder
    (root / "b" / "again.mkv").symlink_to(root / "a" / "x.mkv")  # one file, two paths
    (root / "b" / "gone.mkv").symlink_to(root / "nowhere.mkv")  # a broken link
    out = root / "out"  # an output inside the input folder is not ingested on a re-run
    for _ in range(2):
        proc = _prepare_cli(
            "--input",
            str(root),
            "--output",
            str(out),
            "--fps",
            "4",
            "--test_fraction",
            "0",
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        manifest = Manifest.read(out)
        assert [e.id for e in manifest.written] == ["a/x.mkv", "b/y.mkv"]
        assert [(e.id, e.kind) for e in manifest.skipped] == [
            ("b/again.mkv", "duplicate"),
            ("b/gone.mkv", "missing"),
        ]
        assert "the same file as a/x.mkv" in manifest.skipped[0].reason


def test_a_copy_of_a_file_is_ingested_once(tmp_path):
    """Byte-identical files under two paths (a clip saved twice, in two class folders).

    A copy is ingested once, so it is not counted twice in training and cannot sit in the
    held-out split beside its original.
    """
    root = tmp_path / "in"
    write_clip(root / "a" / "x.mkv")
    write_clip(root / "b" / "y.mkv", level=200)
    shutil.copyfile(root / "a" / "x.mkv", root / "b" / "x_copy.mkv")
    shutil.copyfile(root / "a" / "x.mkv", root / "a" / "x_again.mkv")
    (root / "c").mkdir()
    shutil.copyfile(root / "b" / "y.mkv", root / "c" / "y.mkv")
    write_clip(root / "b" / "z.mkv", level=60)  # another clip of the same size, other bytes
    assert (root / "b" / "z.mkv").stat().st_size == (root / "a" / "x.mkv").stat().st_size
    proc = _prepare_cli(
        "--input",
        str(root),
        "--output",
        str(tmp_path / "out"),
        "--fps",
        "4",
        "--test_fraction",
        "0",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = Manifest.read(tmp_path / "out")
    assert [e.id for e in manifest.written] == ["a/x.mkv", "b/y.mkv", "b/z.mkv"]
    assert [(e.id, e.kind, e.reason) for e in manifest.skipped] == [
        (
            "a/x_again.mkv",
            "duplicate",
            "the same bytes as a/x.mkv (a copy); ingested once, as that id",
        ),
        (
            "b/x_copy.mkv",
            "duplicate",
            "the same bytes as a/x.mkv (a copy); ingested once, as that id",
        ),
        ("c/y.mkv", "duplicate", "the same bytes as b/y.mkv (a copy); ingested once, as that id"),
    ]
    assert [e.same_as for e in manifest.skipped] == ["a/x.mkv", "a/x.mkv", "b/y.mkv"]
    # One row per kind in the printed table, however many originals (not a line per copy,
    # as one row per reason would print).
    assert prepare.format_summary(manifest).splitlines()[2] == (
        "skipped       3  duplicate: e.g. the same bytes as a/x.mkv (a copy); ingested once, as "
        "that id (2 reasons; manifest.json lists each file's)"
    )


def test_empty_and_unreadable_files_are_not_called_copies(tmp_path, monkeypatch):
    """Empty files keep their own reason (``empty``), and an unreadable one is not compared."""
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"")
    for name in ("c.mp4", "d.mp4", "e.mp4"):
        (tmp_path / name).write_bytes(b"same")

    def refusing_open(path, *args, **kwargs):  # e.mp4 unreadable, even to root
        if Path(path).name == "e.mp4":
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(sources, "open", refusing_open, raising=False)
    paths = sorted(tmp_path.iterdir())
    kept, dropped = sources.unique_files(paths, tmp_path)
    assert dropped == [(tmp_path / "d.mp4", tmp_path / "c.mp4", sources.SAME_CONTENT)]
    assert kept == [tmp_path / n for n in ("a.mp4", "b.mp4", "c.mp4", "e.mp4")]


def test_media_is_probed_not_judged_by_extension(tmp_path):
    root = tmp_path / "in"
    for name in ("x.m2ts", "y.mxf", "z.divx"):  # real clips under unusual names
        write_clip(root / "a" / "clip.mkv").rename(root / "a" / name)
    (root / "a" / "notes.txt").write_text("shot on a phone\n")
    (root / "a" / "blob.bin").write_bytes(bytes(range(256)) * 8)
    proc = _prepare_cli(
        "--input",
        str(root),
        "--output",
        str(tmp_path / "out"),
        "--fps",
        "4",
        "--test_fraction",
        "0",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = Manifest.read(tmp_path / "out")
    assert [e.id for e in manifest.written] == ["a/x.m2ts", "a/y.mxf", "a/z.divx"]
    assert [(e.id, e.kind) for e in manifest.skipped] == [
        ("a/blob.bin", "not_media"),
        ("a/notes.txt", "not_media"),
    ]
    assert manifest.summary["files"] == 5


def test_audio_only_folder_is_refused_or_kept_with_the_flag(tmp_path):
    for i in range(2):
        _write_wav(tmp_path / "in" / "rain" / f"{i}.wav", rate=0.05 * (i + 1))  # not copies
    line = error_line_of(
        _prepare_cli(
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--test_fraction",
            "0",
        )
    )
    assert line == (
        "error: nothing was written (2 no_video); audio-only inputs need --allow_missing_video"
    )
    # The corrected command, same --output: the run that wrote nothing is replaced.
    proc = _prepare_cli(
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "out"),
        "--test_fraction",
        "0",
        "--allow_missing_video",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = Manifest.read(tmp_path / "out")
    assert not manifest.skipped
    assert [e.id for e in manifest.written] == ["rain/0.wav", "rain/1.wav"]
    assert manifest.written[0].num_frames == 0 and manifest.written[0].num_samples == 8000


def test_rerun_with_other_settings_names_the_differing_keys(tmp_path):
    write_clip(tmp_path / "in" / "a" / "x.mkv")
    args = (
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "out"),
        "--test_fraction",
        "0",
    )
    assert _prepare_cli(*args, "--fps", "4").returncode == 0
    before = _snapshot(tmp_path / "out")
    line = error_line_of(_prepare_cli(*args, "--fps", "2", "--short_side", "16"))
    assert "fps: 4.0 there, 2.0 now" in line and "short_side: 40 there, 16 now" in line
    assert "jpeg_quality" not in line
    assert _snapshot(tmp_path / "out") == before


def test_output_that_cannot_be_a_folder_is_one_line(tmp_path):
    write_clip(tmp_path / "in" / "a" / "x.mkv")
    (tmp_path / "file").write_text("x")
    line = error_line_of(
        _prepare_cli("--input", str(tmp_path / "in"), "--output", str(tmp_path / "file" / "out"))
    )
    assert line == (
        f"error: output {tmp_path / 'file' / 'out'}: {tmp_path / 'file'} is a file, "
        "not a folder; give a folder for --output"
    )
    assert (tmp_path / "file").read_text() == "x"


def test_unwritable_output_is_one_line(tmp_path):
    write_clip(tmp_path / "in" / "a" / "x.mkv")
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
    elif os.path.isdir("/sys/kernel"):
        locked = Path("/sys/kernel")  # root writes anywhere but in sysfs
    else:
        pytest.skip("running as root without sysfs: no folder is unwritable")
    line = error_line_of(
        _prepare_cli("--input", str(tmp_path / "in"), "--output", str(locked / "avts_out"))
    )
    assert line.startswith(f"error: output {locked / 'avts_out'}: permission denied")
    assert "choose a folder you can write to" in line
    assert not (locked / "avts_out").exists()


def test_csv_layouts_are_told_apart_by_their_header(tmp_path):
    write_clip(tmp_path / "x.mkv")
    (tmp_path / "list.csv").write_text("file,label\nx.mkv,cat\n")
    line = error_line_of(
        _prepare_cli("--input", str(tmp_path / "list.csv"), "--output", str(tmp_path / "out"))
    )
    assert "first line 'file,label'" in line and "path,label[,split][,start,end]" in line
    assert "youtube_id" in line and not (tmp_path / "out").exists()


def test_the_same_path_twice_in_a_csv_is_refused(tmp_path):
    write_clip(tmp_path / "x.mkv")
    (tmp_path / "list.csv").write_text("path,label\nx.mkv,cat\n./x.mkv,dog\n")
    line = error_line_of(
        _prepare_cli("--input", str(tmp_path / "list.csv"), "--output", str(tmp_path / "out"))
    )
    assert "lines 2 and 3 list the same file" in line
    assert not (tmp_path / "out").exists()


def test_a_hung_decoder_becomes_a_timeout_skip(tmp_path, monkeypatch):
    import time

    for i in range(2):
        write_clip(tmp_path / "in" / f"c{i}.mkv")
    original = prepare.process_item

    def hangs_on_c0(item, label_index, config, **options):
        if item.id == "c0.mkv":
            time.sleep(60)
        return original(item, label_index, config, **options)

    monkeypatch.setattr(prepare, "process_item", hangs_on_c0)
    start = time.monotonic()
    manifest = prepare.prepare_dataset(
        tmp_path / "in",
        tmp_path / "out",
        options=prepare.RunOptions(progress=False, decode_timeout=1.0),
    )
    assert time.monotonic() - start < 30
    assert [(e.id, e.kind) for e in manifest.skipped] == [("c0.mkv", "timeout")]
    assert "longer than 1 s" in manifest.skipped[0].reason
    assert [e.id for e in manifest.written] == ["c1.mkv"]


class _Terminal:
    """A stderr stand-in that says it is a terminal."""

    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass

    def isatty(self):
        return True


def test_progress_is_a_tqdm_bar_on_a_terminal_and_log_lines_elsewhere(monkeypatch, capsys):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    report = prepare._Progress(3, 1, enabled=True)
    report.step(False)
    report.step(True)
    assert "ingest" in terminal.text and "3/3" in terminal.text and "file/s" in terminal.text
    assert "skipped=1" in terminal.text and report.bar is None  # closed at the end
    monkeypatch.undo()
    report = prepare._Progress(2, 0, enabled=True)
    report.step(True)
    report.step(False)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ingest: 2/2 files (1 skipped) ")
    assert "files/s ETA 00:00:00" in lines[0]


REAL_AV = REPO_ROOT.parent / "shared" / "data" / "real_av"


def test_real_files_under_awkward_names_links_and_two_workers(tmp_path):
    """The user trial's folder, by links to the shared real files (never copied)."""
    if not REAL_AV.is_dir():
        pytest.skip(f"real media not found at {REAL_AV}")
    root = tmp_path / "in"
    (root / "talk").mkdir(parents=True)
    (root / "silent").mkdir()
    (root / "talk" / "bento.m2ts").symlink_to(REAL_AV / "bento.mp4")
    (root / "talk" / "nasa.mxf").symlink_to(REAL_AV / "nasa_13013.mp4")
    (root / "talk" / "test.divx").symlink_to(REAL_AV / "mmaction2_test.avi")
    (root / "talk" / "nasa_again.mp4").symlink_to(REAL_AV / "nasa_13013.mp4")
    for name in ("av1_video.mkv", "h265_video.mp4", "h264_10bits.mp4"):
        (root / "silent" / name).symlink_to(REAL_AV / name)
    (root / "silent" / "loop").symlink_to(root)
    (root / "talk" / "README.txt").write_text("clips from the trial\n")
    proc = _prepare_cli(
        "--input",
        str(root),
        "--output",
        str(tmp_path / "out"),
        "--workers",
        "2",
        "--allow_missing_audio",
        "--fps",
        "2",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = Manifest.read(tmp_path / "out")
    assert sorted(e.id for e in manifest.written) == [
        "silent/av1_video.mkv",
        "silent/h264_10bits.mp4",
        "silent/h265_video.mp4",
        "talk/bento.m2ts",
        "talk/nasa.mxf",
        "talk/test.divx",
    ]
    assert {e.id: e.kind for e in manifest.skipped} == {
        "talk/README.txt": "not_media",
        "talk/nasa_again.mp4": "duplicate",
    }
    assert set(manifest.splits) == {"train", "test"}
    assert "crash" not in proc.stderr


def test_help_shows_the_tool_and_a_missing_input_is_one_line(tmp_path):
    proc = _prepare_cli("--helpshort")
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # absl's help exits 1
    assert proc.stdout.startswith("Ingest media files into TFRecord shards")
    for flag in ("--input", "--decode_timeout", "--test_fraction", "--allow_missing_video"):
        assert flag in proc.stdout
    line = error_line_of(
        _prepare_cli("--input", str(tmp_path / "nothing"), "--output", str(tmp_path / "out"))
    )
    assert line == (
        f"error: input does not exist: {tmp_path / 'nothing'}; check the path and its permissions"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_hung_decoder_in_a_worker_becomes_a_timeout_skip(tmp_path, monkeypatch):
    """With --workers 2 the alarm fires in the worker; the other files are kept."""
    misbehaving_worker(
        tmp_path, monkeypatch, "hanging_worker", "import time", "        time.sleep(120)"
    )
    manifest = prepare.prepare_dataset(
        tmp_path / "in",
        tmp_path / "out",
        workers=2,
        options=prepare.RunOptions(progress=False, decode_timeout=2.0),
    )
    assert [(e.id, e.kind) for e in manifest.skipped] == [("c1.mkv", "timeout")]
    assert [e.id for e in manifest.written] == ["c0.mkv", "c2.mkv"]


@pytest.mark.slow
def test_a_worker_hung_past_its_alarm_is_killed_and_the_file_skipped(tmp_path, monkeypatch):
    """A hang the alarm cannot stop (native code): the parent kills the worker."""
    misbehaving_worker(
        tmp_path,
        monkeypatch,
        "deaf_worker",
        "import signal\nimport time",
        "        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n"
        "        time.sleep(120)",
    )
    monkeypatch.setattr(prepare, "HARD_LIMIT_MARGIN_S", 2.0)
    manifest = prepare.prepare_dataset(
        tmp_path / "in",
        tmp_path / "out",
        workers=2,
        options=prepare.RunOptions(progress=False, decode_timeout=1.0),
    )
    assert [(e.id, e.kind) for e in manifest.skipped] == [("c1.mkv", "timeout")]
    assert [e.id for e in manifest.written] == ["c0.mkv", "c2.mkv"]


def test_a_tilde_after_the_equals_sign_is_the_home_folder(tmp_path):
    """The shell leaves `--output=~/data` as it is; the tool expands it, since taken
    literally it would make a folder named `~` in the current folder (one `rm -rf ~` away
    from deleting the user's home)."""
    home, here = tmp_path / "home", tmp_path / "here"
    write_clip(home / "clips" / "a.mkv")
    here.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tools" / "prepare_data.py"),
            "--input=~/clips",
            "--output=~/prepared",
            "--fps=4",
        ],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=here,
        env={**os.environ, "HOME": str(home)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Manifest.read(home / "prepared").num_records("train") == 1
    assert list(here.iterdir()) == []
