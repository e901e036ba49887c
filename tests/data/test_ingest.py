"""Tests of input listings, sharding, manifest and resume (ingestion.sources, ingestion.prepare)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import tensorflow as tf

from avts_tf.data import records
from avts_tf.data.ingestion import prepare, sources, synthetic
from avts_tf.data.manifest import IngestConfig, Manifest, Shard


def write_clip(path: Path, seconds: float = 1.0, audio: bool = True, level: int = 100) -> Path:
    """A tiny 32x32 10 fps MPEG-4 + PCM Matroska/AVI clip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        a_s = c.add_stream("pcm_s16le", rate=16000, layout="mono") if audio else None
        for k in range(round(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), level, np.uint8), "rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 10)
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
        if a_s is not None:
            pcm = (np.sin(np.arange(round(seconds * 16000)) * 0.05) * 1000).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm[None], format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16000, 0
            c.mux(a_s.encode(frame))
            c.mux(a_s.encode())
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A folder of 2 classes with 5 good clips and 3 bad files."""
    root = tmp_path / "in"
    for i in range(3):
        write_clip(root / "cat" / f"c{i}.mkv", level=40 + i)
    for i in range(2):
        write_clip(root / "dog" / "sub" / f"d{i}.avi", level=140 + i)
    write_clip(root / "dog" / "silent.mkv", audio=False)
    (root / "dog" / "empty.mp4").write_bytes(b"")
    (root / "cat" / "readme.mp4").write_text("not a video")
    (root / "cat" / "notes.txt").write_text("probed, found not media, listed as skipped")
    return root


def read_shard(path: Path) -> list[dict]:
    return [
        {k: v.numpy() for k, v in records.parse(s).items()}
        for s in tf.data.TFRecordDataset(str(path))
    ]


def test_list_folder(dataset):
    items = sources.list_folder(dataset)
    assert [(it.id, it.label) for it in items] == [
        ("cat/c0.mkv", "cat"),
        ("cat/c1.mkv", "cat"),
        ("cat/c2.mkv", "cat"),
        ("cat/notes.txt", "cat"),
        ("cat/readme.mp4", "cat"),
        ("dog/empty.mp4", "dog"),
        ("dog/silent.mkv", "dog"),
        ("dog/sub/d0.avi", "dog"),
        ("dog/sub/d1.avi", "dog"),
    ]
    assert all(it.split == "train" and Path(it.path).is_absolute() for it in items)


def test_list_csv(tmp_path):
    (tmp_path / "lists").mkdir()
    csv_path = tmp_path / "lists" / "data.csv"
    csv_path.write_text("path,label,split\n../v/b.mp4,dog,test\n/abs/a.mp4,cat,\nc.mp4,cat,val\n")
    items = sources.list_csv(csv_path)
    assert [it.split for it in items] == ["test", "train", "val"]  # Sorted by (split, id).
    assert [it.label for it in items] == ["dog", "cat", "cat"]
    by_split = {it.split: it for it in items}
    assert by_split["test"].path == str(tmp_path / "v" / "b.mp4")
    assert by_split["train"].path == "/abs/a.mp4"
    assert by_split["val"].id == "c.mp4"
    (tmp_path / "bad.csv").write_text("file,label\nx.mp4,a\n")
    with pytest.raises(ValueError, match="path,label"):
        sources.list_csv(tmp_path / "bad.csv")


def test_plan_is_round_robin_and_sorted():
    items = [
        sources.SourceItem(f"/x/{i}.mp4", f"{i:02d}.mp4", "a" if i % 2 else "b") for i in range(7)
    ]
    plans = prepare.plan_shards(items[::-1], ["a", "b"], num_shards=3)
    assert [p.name for p in plans] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert [it.id for it in plans[0].items] == ["00.mp4", "03.mp4", "06.mp4"]
    assert plans[0].label_indices == (1, 0, 1)
    assert len(prepare.plan_shards(items, [], num_shards=50)) == 7  # No empty shards.


def test_prepare_dataset(dataset, tmp_path):
    out = tmp_path / "out"
    manifest = prepare.prepare_dataset(
        dataset,
        out,
        IngestConfig(fps=5, short_side=24, num_shards=2),
        options=prepare.RunOptions(progress=False),
    )
    assert manifest.to_dict() == json.loads((out / "manifest.json").read_text())
    assert Manifest.read(out) == manifest
    assert manifest.labels == ("cat", "dog")
    assert manifest.fps == 5.0
    assert {e.id: e.kind for e in manifest.skipped} == {
        "cat/notes.txt": "not_media",
        "cat/readme.mp4": "not_media",
        "dog/empty.mp4": "zero_byte",
        "dog/silent.mkv": "no_audio",
    }
    assert all("\n" not in e.reason for e in manifest.skipped)
    written = {e.id: e for e in manifest.written}
    assert sorted(written) == [
        "cat/c0.mkv",
        "cat/c1.mkv",
        "cat/c2.mkv",
        "dog/sub/d0.avi",
        "dog/sub/d1.avi",
    ]
    c0 = written["cat/c0.mkv"]
    assert (c0.num_frames, c0.num_samples, c0.duration) == (5, 16000, 1.0)
    shards = manifest.splits["train"].shards
    assert [s.file for s in shards] == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]
    assert sum(s.records for s in shards) == 5 == manifest.num_records("train")
    parsed = [r for s in shards for r in read_shard(out / s.file)]
    assert len(parsed) == 5
    by_id = {r["id"].decode(): r for r in parsed}
    d0 = by_id["dog/sub/d0.avi"]
    assert d0["label"] == b"dog" and d0["label_index"] == 1 and d0["split"] == b"train"
    assert d0["num_frames"] == 5 and (d0["height"], d0["width"]) == (24, 24)
    assert d0["waveform"].shape == (16000,) and d0["sample_rate"] == 16000
    assert abs(tf.io.decode_jpeg(d0["frames"][0]).numpy().mean() - 140) < 6
    assert not list(out.glob(".*tmp*"))
    summary = prepare.format_summary(manifest)
    assert "zero_byte" in summary and "written" in summary


def test_allow_missing_audio(dataset, tmp_path):
    manifest = prepare.prepare_dataset(
        dataset,
        tmp_path / "out",
        IngestConfig(require_audio=False),
        options=prepare.RunOptions(progress=False),
    )
    silent = [e for e in manifest.written if e.id == "dog/silent.mkv"]
    assert silent and silent[0].num_samples == 0


def test_rerun_keeps_shards_and_refuses_other_config(dataset, tmp_path):
    out = tmp_path / "out"
    first = prepare.prepare_dataset(
        dataset, out, IngestConfig(num_shards=2), options=prepare.RunOptions(progress=False)
    )
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tfrecord")}
    assert (
        prepare.prepare_dataset(
            dataset, out, IngestConfig(num_shards=2), options=prepare.RunOptions(progress=False)
        )
        == first
    )
    assert before == {p.name: p.stat().st_mtime_ns for p in out.glob("*.tfrecord")}
    with pytest.raises(ValueError, match="another input or config"):
        prepare.prepare_dataset(
            dataset,
            out,
            IngestConfig(num_shards=2, fps=4),
            options=prepare.RunOptions(progress=False),
        )


def touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_a_folder_with_its_dataset_csv_is_read_through_it(tmp_path):
    """``avts-make-synthetic``'s folder given as a folder: its CSV's labels and splits.

    The CSV is used rather than the folder layout: read as a plain folder, every video
    would take the label ``videos`` (its sub-folder), and ``avts-finetune --data=syn``
    would find one label.
    """
    csv_path = synthetic.generate_synthetic_dataset(
        tmp_path / "syn",
        num_videos=4,
        seed=1,
        duration_s=1.0,
        fps=4,
        size=16,
        num_classes=2,
        test_fraction=0.25,
    )
    layout, items = sources.discover(tmp_path / "syn")
    assert (layout, items) == sources.discover(csv_path)
    assert layout == "csv" and len({it.label for it in items}) == 2
    assert {it.split for it in items} == {"train", "test"}
    (tmp_path / "other").mkdir()  # a dataset.csv of another kind: a plain folder
    (tmp_path / "other" / "dataset.csv").write_text("name,score\nx,1\n")
    touch(tmp_path / "other", "cats/a.mp4")
    assert sources.discover(tmp_path / "other")[0] == "folder"
    assert sources.discover(tmp_path / "syn", "folder")[0] == "folder"  # when asked for


def test_layout_esc50(tmp_path):
    touch(tmp_path, "audio/1-100-A-0.wav", "audio/5-9-A-1.wav")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n"
        "1-100-A-0.wav,1,0,dog,True,100,A\n5-9-A-1.wav,5,1,rooster,False,9,A\n"
    )
    layout, items = sources.discover(tmp_path)
    assert layout == "esc50" and "esc50" in sources.AUDIO_LAYOUTS
    assert [(it.id, it.label, it.split) for it in items] == [
        ("audio/1-100-A-0.wav", "dog", "fold1"),
        ("audio/5-9-A-1.wav", "rooster", "fold5"),
    ]


def test_layout_dcase2014(tmp_path):
    touch(
        tmp_path, "development/bus01.wav", "development/busystreet10.wav", "evaluation/park/p1.wav"
    )
    items = sources.discover(tmp_path, "dcase2014")[1]
    assert {(it.id, it.label, it.split) for it in items} == {
        ("development/bus01.wav", "bus", "train"),
        ("development/busystreet10.wav", "busystreet", "train"),
        ("evaluation/park/p1.wav", "park", "test"),
    }
    meta = tmp_path / "meta_style"
    touch(meta, "audio/a.wav", "audio/b.wav")
    (meta / "meta.txt").write_text("audio/a.wav\tbeach\naudio/b.wav\toffice\n")
    (meta / "evaluation_setup").mkdir()
    (meta / "evaluation_setup" / "fold1_test.txt").write_text("audio/b.wav\n")
    items = sources.discover(meta, "dcase2014")[1]
    assert [(it.id, it.label, it.split) for it in items] == [
        ("audio/b.wav", "office", "test"),
        ("audio/a.wav", "beach", "train"),
    ]


def test_layout_ucf101(tmp_path):
    touch(
        tmp_path,
        "UCF-101/ApplyLipstick/v_ApplyLipstick_g01_c01.avi",
        "UCF-101/YoYo/v_YoYo_g25_c05.avi",
    )
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "trainlist01.txt").write_text("YoYo/v_YoYo_g25_c05.avi 101\n")
    (lists / "testlist01.txt").write_text("ApplyLipstick/v_ApplyLipstick_g01_c01.avi\n")
    layout, items = sources.discover(tmp_path)
    assert layout == "ucf101"
    assert [(it.label, it.split) for it in items] == [("ApplyLipstick", "test"), ("YoYo", "train")]
    assert all(Path(it.path).is_file() for it in items)


def test_layout_hmdb51(tmp_path):
    touch(
        tmp_path,
        "hmdb51_org/brush_hair/a.avi",
        "hmdb51_org/brush_hair/b.avi",
        "hmdb51_org/brush_hair/c.avi",
    )
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    layout, items = sources.discover(tmp_path)
    assert layout == "hmdb51"
    assert [(it.id, it.split) for it in items] == [
        ("brush_hair/b.avi", "test"),
        ("brush_hair/a.avi", "train"),
    ]
    assert all(Path(it.path).is_file() for it in items)


def test_layout_youtube_csvs(tmp_path):
    touch(tmp_path, "videos/abc_000010_000020.mp4", "full/xyz.mkv")
    kinetics = tmp_path / "kinetics.csv"
    kinetics.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,abc,10,20,train\nsinging,xyz,3,13,val\nsinging,gone,0,10,val\n"
    )
    items = {it.id: it for it in sources.discover(kinetics)[1]}
    assert sources.detect_layout(kinetics) == "youtube"
    cut = items["abc_000010_000020"]
    assert (cut.label, cut.split, cut.start) == ("abseiling", "train", None)
    full = items["xyz_000003_000013"]
    assert (full.path, full.start, full.end) == (str(tmp_path / "full/xyz.mkv"), 3.0, 13.0)
    assert not Path(items["gone_000000_000010"].path).exists()
    audioset = tmp_path / "eval_segments.csv"
    audioset.write_text(
        "# Segments csv created Sun Mar  5 10:54:25 2017\n"
        "# num_ytids=1, num_segs=1, num_unique_labels=2, num_positive_labels=2\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        'xyz, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n'
    )
    (item,) = sources.discover(audioset)[1]
    assert (item.id, item.label, item.split, item.start) == (
        "xyz_000030_000040",
        "/m/09x0r",
        "test",
        30.0,
    )
    vggsound = tmp_path / "vggsound.csv"
    vggsound.write_text("abc,10,people marching,test\n")
    (item,) = sources.discover(vggsound)[1]
    assert (item.id, item.label, item.split) == ("abc_000010_000020", "people marching", "test")


def test_youtube_cut_end_to_end(tmp_path):
    write_clip(tmp_path / "media" / "vid.mkv", seconds=3.0)
    (tmp_path / "list.csv").write_text("youtube_id,start,end,label\nvid,1,2,x\n")
    manifest = prepare.prepare_dataset(
        tmp_path / "list.csv",
        tmp_path / "out",
        IngestConfig(fps=4),
        options=prepare.RunOptions(progress=False),
    )
    (entry,) = manifest.written
    assert (entry.id, entry.start, entry.end) == ("vid_000001_000002", 1.0, 2.0)
    assert (entry.num_frames, entry.num_samples) == (4, 16000)
    assert Manifest.read(tmp_path / "out").written == (entry,)  # The cut survives a round trip.


_KILLER = """
import os, signal, sys
from avts_tf.data.ingestion import prepare
from avts_tf.data.manifest import IngestConfig
src, out, mode, at, workers = sys.argv[1:6]
count = [0]
def boom():
    count[0] += 1
    if count[0] == int(at):
        os.kill(os.getpid(), signal.SIGKILL)
if mode == "record":  # Killed in the middle of a shard.
    add = prepare._ShardWriter.add
    def patched(self, entry, data):
        add(self, entry, data)
        boom()
    prepare._ShardWriter.add = patched
else:  # Killed after a shard's sidecar is written, before the shard is renamed.
    replace = os.replace
    def patched(a, b):
        if str(b).endswith(".tfrecord"):
            boom()
        replace(a, b)
    prepare.os.replace = patched
prepare.prepare_dataset(src, out, IngestConfig(num_shards=3), workers=int(workers),
                        options=prepare.RunOptions(progress=False))
"""


def kill_midway(src: Path, out: Path, mode: str, at: int, workers: int) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, str(src), str(out), mode, str(at), str(workers)],
        env=env,
        capture_output=True,
        timeout=170,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not (out / "manifest.json").exists()


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "lock"}


def check_resume(dataset: Path, tmp_path: Path, mode: str, at: int, workers: int) -> None:
    reference = tmp_path / "reference"
    prepare.prepare_dataset(
        dataset, reference, IngestConfig(num_shards=3), options=prepare.RunOptions(progress=False)
    )
    out = tmp_path / "killed"
    kill_midway(dataset, out, mode, at, workers)
    finished = sorted(p.name for p in out.glob("*.tfrecord"))
    assert 0 < len(finished) < 3  # Some, not all, shards were complete.
    prepare.prepare_dataset(
        dataset, out, IngestConfig(num_shards=3), options=prepare.RunOptions(progress=False)
    )
    assert snapshot(out) == snapshot(reference)
    assert snapshot(out / prepare.STATE_DIR) == snapshot(reference / prepare.STATE_DIR)


@pytest.mark.parametrize(("mode", "at"), [("record", 5), ("rename", 2)])
def test_resume_after_kill(dataset, tmp_path, mode, at):
    check_resume(dataset, tmp_path, mode, at, workers=1)


@pytest.mark.slow
def test_resume_after_kill_with_workers(dataset, tmp_path):
    """Killed with 2 workers, resumed with 1: same bytes (worker count does not matter)."""
    check_resume(dataset, tmp_path, "record", 5, workers=2)


def test_cli(tmp_path):
    write_clip(tmp_path / "in" / "a" / "x.mkv")
    (tmp_path / "in" / "a" / "empty.mp4").write_bytes(b"")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            sys.executable,
            str(repo / "tools" / "prepare_data.py"),
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--fps",
            "4",
            "--num_shards",
            "1",
            "--test_fraction",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote 1 records, skipped 1 files" in proc.stdout
    assert "empty.mp4: zero-byte file" in proc.stderr  # The skip, named, one line.
    assert "zero_byte" in proc.stderr  # The summary table.
    assert Manifest.read(tmp_path / "out").splits["train"].shards == (
        Shard("train-00000-of-00001.tfrecord", 1),
    )


def test_added_files_replan_and_stale_shards_go(dataset, tmp_path):
    out = tmp_path / "out"
    prepare.prepare_dataset(dataset, out, options=prepare.RunOptions(progress=False))
    assert [p.name for p in out.glob("*.tfrecord")] == ["train-00000-of-00001.tfrecord"]
    write_clip(dataset / "cat" / "c9.mkv")
    prepare.FILES_PER_SHARD, saved = 5, prepare.FILES_PER_SHARD
    try:
        manifest = prepare.prepare_dataset(dataset, out, options=prepare.RunOptions(progress=False))
    finally:
        prepare.FILES_PER_SHARD = saved
    assert sorted(p.name for p in out.glob("*.tfrecord")) == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]
    assert manifest.summary["written"] == 6 == len(Manifest.read(out).written)


def misbehaving_worker(tmp_path, monkeypatch, name: str, imports: str, action: str) -> None:
    """Three clips in ``tmp_path/in``; ``prepare.process_item`` does ``action`` on ``c1.mkv``.

    The replacement lives in an importable module (``name``) so that spawned worker
    processes find it.
    """
    for i in range(3):
        write_clip(tmp_path / "in" / f"c{i}.mkv")
    helper = tmp_path / "helper"
    helper.mkdir()
    (helper / f"{name}.py").write_text(
        f"{imports}\n"
        "from avts_tf.data.ingestion.prepare import process_item as original\n\n\n"
        "def process_item(item, label_index, config, **options):\n"
        "    if item.id == 'c1.mkv':\n"
        f"{action}\n"
        "    return original(item, label_index, config, **options)\n"
    )
    monkeypatch.syspath_prepend(str(helper))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    module = __import__(name)
    monkeypatch.setattr(prepare, "process_item", module.process_item)


@pytest.mark.slow
def test_worker_crash_is_isolated_and_reported(tmp_path, monkeypatch):
    """A file that kills its worker (like a decoder segfault) is skipped; the rest go on."""
    misbehaving_worker(
        tmp_path, monkeypatch, "crashing_worker", "import os", "        os._exit(11)"
    )
    manifest = prepare.prepare_dataset(
        tmp_path / "in", tmp_path / "out", workers=2, options=prepare.RunOptions(progress=False)
    )
    assert [(e.id, e.kind) for e in manifest.skipped] == [("c1.mkv", "crash")]
    assert [e.id for e in manifest.written] == ["c0.mkv", "c2.mkv"]


def test_bad_split_name(tmp_path):
    (tmp_path / "l.csv").write_text("path,label,split\na.mp4,x,train-extra\n")
    with pytest.raises(ValueError, match="split 'train-extra'"):
        sources.list_csv(tmp_path / "l.csv")


def test_a_written_files_warnings_are_logged_like_a_skipped_files_reason(caplog):
    with caplog.at_level("WARNING", logger=prepare.logger.name):
        prepare.log_outcome({"path": "a.mp4", "warnings": ["late audio", "short audio"]}, b"r")
        prepare.log_outcome({"path": "b.mp4", "reason": "no audio stream"}, None)
    assert caplog.messages == [
        "a.mp4: late audio",
        "a.mp4: short audio",
        "skipped b.mp4: no audio stream",
    ]


def test_a_folder_is_guessed_fsdd_only_when_it_holds_nothing_but_fsdd_recordings(tmp_path):
    touch(tmp_path, "0_george_0.wav", "1_george_5.wav", ".DS_Store")
    assert sources.detect_layout(tmp_path) == "fsdd"
    (tmp_path / "holiday.mp4").touch()  # The FSDD layout would leave it out unlisted.
    assert sources.detect_layout(tmp_path) == "folder"
    assert {it.id for it in sources.discover(tmp_path)[1]} >= {"holiday.mp4", "0_george_0.wav"}
    (tmp_path / "holiday.mp4").unlink()
    touch(tmp_path, "cats/a.mp4")  # A label sub-folder.
    assert sources.detect_layout(tmp_path) == "folder"


BOM = "\ufeff"  # Excel's "CSV UTF-8" and Windows Notepad start a file with it.


def test_lists_saved_with_a_byte_order_mark_read_as_without(tmp_path):
    touch(tmp_path, "v/a.mp4", "videos/abc_000010_000020.mp4")
    media_list = tmp_path / "media.csv"
    media_list.write_text(BOM + "path,label\r\nv/a.mp4,cat\r\n", encoding="utf-8")
    assert sources.detect_layout(media_list) == "csv"
    assert [(it.id, it.label) for it in sources.discover(media_list)[1]] == [("v/a.mp4", "cat")]
    kinetics = tmp_path / "kinetics.csv"
    kinetics.write_text(
        BOM + "label,youtube_id,time_start,time_end\nabseiling,abc,10,20\n", encoding="utf-8"
    )
    assert sources.detect_layout(kinetics) == "youtube"
    assert [(it.id, it.label) for it in sources.discover(kinetics)[1]] == [
        ("abc_000010_000020", "abseiling")
    ]
    esc50 = tmp_path / "esc50"
    touch(esc50, "audio/1-100-A-0.wav")
    (esc50 / "meta").mkdir()
    (esc50 / "meta" / "esc50.csv").write_text(
        BOM + "filename,fold,target,category\n1-100-A-0.wav,1,0,dog\n", encoding="utf-8"
    )
    assert [(it.label, it.split) for it in sources.discover(esc50)[1]] == [("dog", "fold1")]


def test_a_list_written_from_the_current_folder_is_refused_naming_the_fix(tmp_path, monkeypatch):
    touch(tmp_path, "clips/a.mp4", "lists/b.mp4")
    (tmp_path / "lists" / "mine.csv").write_text("path,label\nclips/a.mp4,cat\nb.mp4,dog\n")
    monkeypatch.chdir(tmp_path)  # clips/a.mp4 exists from here, not from lists/.
    with pytest.raises(
        ValueError,
        match=r"1 relative path\(s\) are not in the list's folder .*"
        r"\(first: 'clips/a.mp4'\); relative paths in a list",
    ):
        sources.list_csv("lists/mine.csv")
    monkeypatch.chdir(tmp_path / "lists")  # From the list's folder nothing is ambiguous.
    (tmp_path / "lists" / "mine.csv").write_text("path,label\n../clips/a.mp4,cat\nb.mp4,dog\n")
    assert [it.label for it in sources.list_csv("mine.csv")] == ["cat", "dog"]
