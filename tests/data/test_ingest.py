"""Tests of input listings, sharding, manifest and resume (avts_tf.data.sources/ingest)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import tensorflow as tf

from avts_tf.data import ingest, records, sources


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
    (root / "cat" / "notes.txt").write_text("ignored: not a media extension")
    return root


def read_shard(path: Path) -> list[dict]:
    return [{k: v.numpy() for k, v in records.parse(s).items()}
            for s in tf.data.TFRecordDataset(str(path))]


def test_list_folder(dataset):
    items = sources.list_folder(dataset)
    assert [(it.id, it.label) for it in items] == [
        ("cat/c0.mkv", "cat"), ("cat/c1.mkv", "cat"), ("cat/c2.mkv", "cat"),
        ("cat/readme.mp4", "cat"), ("dog/empty.mp4", "dog"), ("dog/silent.mkv", "dog"),
        ("dog/sub/d0.avi", "dog"), ("dog/sub/d1.avi", "dog")]
    assert all(it.split == "train" and Path(it.path).is_absolute() for it in items)


def test_list_csv(tmp_path):
    (tmp_path / "lists").mkdir()
    csv_path = tmp_path / "lists" / "data.csv"
    csv_path.write_text("path,label,split\n../v/b.mp4,dog,test\n/abs/a.mp4,cat,\n"
                        "c.mp4,cat,val\n")
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
    items = [sources.SourceItem(f"/x/{i}.mp4", f"{i:02d}.mp4", "a" if i % 2 else "b")
             for i in range(7)]
    plans = ingest.plan_shards(items[::-1], ["a", "b"], num_shards=3)
    assert [p.name for p in plans] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert [it.id for it in plans[0].items] == ["00.mp4", "03.mp4", "06.mp4"]
    assert plans[0].label_indices == (1, 0, 1)
    assert len(ingest.plan_shards(items, [], num_shards=50)) == 7  # No empty shards.


def test_prepare_dataset(dataset, tmp_path):
    out = tmp_path / "out"
    manifest = ingest.prepare_dataset(dataset, out, fps=5, short_side=24, num_shards=2,
                                      progress=False)
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["labels"] == ["cat", "dog"]
    assert manifest["config"]["fps"] == 5.0
    assert {e["id"]: e["kind"] for e in manifest["skipped"]} == {
        "cat/readme.mp4": "not_media", "dog/empty.mp4": "zero_byte",
        "dog/silent.mkv": "no_audio"}
    assert all("\n" not in e["reason"] for e in manifest["skipped"])
    written = {e["id"]: e for e in manifest["written"]}
    assert sorted(written) == ["cat/c0.mkv", "cat/c1.mkv", "cat/c2.mkv", "dog/sub/d0.avi",
                               "dog/sub/d1.avi"]
    c0 = written["cat/c0.mkv"]
    assert (c0["num_frames"], c0["num_samples"], c0["duration"]) == (5, 16000, 1.0)
    shards = manifest["splits"]["train"]["shards"]
    assert [s["file"] for s in shards] == ["train-00000-of-00002.tfrecord",
                                           "train-00001-of-00002.tfrecord"]
    assert sum(s["records"] for s in shards) == 5 == manifest["splits"]["train"]["records"]
    parsed = [r for s in shards for r in read_shard(out / s["file"])]
    assert len(parsed) == 5
    by_id = {r["id"].decode(): r for r in parsed}
    d0 = by_id["dog/sub/d0.avi"]
    assert d0["label"] == b"dog" and d0["label_index"] == 1 and d0["split"] == b"train"
    assert d0["num_frames"] == 5 and (d0["height"], d0["width"]) == (24, 24)
    assert d0["waveform"].shape == (16000,) and d0["sample_rate"] == 16000
    assert abs(tf.io.decode_jpeg(d0["frames"][0]).numpy().mean() - 140) < 6
    assert not list(out.glob(".*tmp*"))
    summary = ingest.format_summary(manifest)
    assert "zero_byte" in summary and "written" in summary


def test_allow_missing_audio(dataset, tmp_path):
    manifest = ingest.prepare_dataset(dataset, tmp_path / "out", require_audio=False,
                                      progress=False)
    silent = [e for e in manifest["written"] if e["id"] == "dog/silent.mkv"]
    assert silent and silent[0]["num_samples"] == 0


def test_rerun_keeps_shards_and_refuses_other_config(dataset, tmp_path):
    out = tmp_path / "out"
    first = ingest.prepare_dataset(dataset, out, num_shards=2, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tfrecord")}
    assert ingest.prepare_dataset(dataset, out, num_shards=2, progress=False) == first
    assert before == {p.name: p.stat().st_mtime_ns for p in out.glob("*.tfrecord")}
    with pytest.raises(ValueError, match="another input or config"):
        ingest.prepare_dataset(dataset, out, num_shards=2, fps=4, progress=False)
