"""Long files stored as pieces of bounded length (ingestion.segments, prepare.process_item)."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import tensorflow as tf

from avts_tf.data import integrity, records
from avts_tf.data.ingestion import prepare, segments, sources
from avts_tf.data.manifest import IngestConfig, Manifest


def test_pieces_of_a_70_s_file_by_hand():
    pieces = segments.plan_pieces(70.0, 8.0, 30.0, 5.0)
    # 240-frame pieces stepping by 200 frames (25 s): [0, 30), [25, 55), [50, end).
    assert pieces == [
        segments.Piece(0, 0.0, 30.0, 0),
        segments.Piece(1, 25.0, 55.0, 200),
        segments.Piece(2, 50.0, None, 400),
    ]
    assert pieces[1].offset_samples(8.0, 16000) == 400_000
    assert segments.piece_id("cat/a.mp4", 2) == "cat/a.mp4@00002"


def test_short_or_unknown_files_stay_whole():
    whole = [segments.Piece(0, 0.0, None, 0)]
    assert segments.plan_pieces(30.0, 8.0, 30.0, 5.0) == whole  # exactly the limit
    assert segments.plan_pieces(None, 8.0, 30.0, 5.0) == whole  # duration unknown
    assert segments.plan_pieces(7200.0, 8.0, None, 5.0) == whole  # cutting off
    with pytest.raises(
        ValueError,
        match="record overlap 30.0 s must be at least 0 and "
        "shorter than the longest record, 30.0 s",
    ):
        segments.plan_pieces(70.0, 8.0, 30.0, 30.0)


@pytest.mark.parametrize("duration", [30.2, 55.05, 61.0, 7200.0, 123.456])
@pytest.mark.parametrize("fps", [8.0, 25.0, 29.97])
def test_pieces_cover_every_window_and_stay_bounded(duration, fps):
    pieces = segments.plan_pieces(duration, fps, 30.0, 5.0)
    total = duration * fps
    spans = [(p.offset_frames, (p.end * fps if p.end is not None else total)) for p in pieces]
    assert spans[0][0] == 0 and pieces[-1].end is None
    for (a, b), piece in zip(spans, pieces, strict=True):
        assert b - a <= 30.0 * fps + 1e-6  # no piece longer than the limit
        assert b - a > 5.0 * fps - 1  # none shorter than the overlap
        assert piece.start == pytest.approx(piece.offset_frames / fps)
    # Consecutive pieces overlap by the overlap's frames: any window of that many frames
    # starting anywhere in the file lies inside one piece.
    window = int(5.0 * fps)
    for start in range(0, int(total) - window + 1, max(1, window // 3)):
        assert any(a <= start and start + window <= b + 1e-6 for a, b in spans), start


def write_counting_video(path: Path, seconds: float, fps: int = 10, rate: int = 16000) -> Path:
    """MPEG-4 video whose frame k has gray level 2k mod 256, PCM audio counting samples."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        vs.codec_context.gop_size = 12
        a_s = c.add_stream("pcm_s16le", rate=rate, layout="mono")
        for k in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 2 * k % 256, np.uint8), "rgb24")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
        pcm = (np.arange(round(seconds * rate)) % 20000 - 10000).astype(np.int16)
        for i in range(0, len(pcm), 1600):
            frame = av.AudioFrame.from_ndarray(pcm[None, i : i + 1600], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            c.mux(a_s.encode(frame))
        c.mux(a_s.encode())
    return path


CONFIG = IngestConfig(fps=10.0, short_side=32, max_record_s=6.0, record_overlap_s=2.0)


@pytest.fixture(scope="module")
def long_file(tmp_path_factory) -> Path:
    return write_counting_video(tmp_path_factory.mktemp("long") / "long.mkv", 17.0)


def test_a_long_file_becomes_pieces_equal_to_slices_of_the_whole(long_file):
    item = sources.SourceItem(path=str(long_file), id="long.mkv", label="", split="train")
    whole_entry, whole = prepare.process_item(
        item, -1, dataclasses.replace(CONFIG, max_record_s=None)
    )
    entry, pieces = prepare.process_item(item, -1, CONFIG)
    assert isinstance(whole, bytes) and whole_entry["records"] == 1
    # 17 s at 10 fps: 60-frame pieces stepping by 40 frames -> [0, 60), [40, 100), [80, 140),
    # [120, 170).
    assert entry["records"] == len(pieces) == 4
    assert (entry["num_frames"], entry["num_samples"]) == (170, 17 * 16000)
    assert entry["duration"] == pytest.approx(17.0)
    full = records.parse(whole)
    for k, serialized in enumerate(pieces):
        piece = records.parse(serialized)
        assert piece["id"].numpy().decode() == f"long.mkv@{k:05d}"
        assert piece["source_id"].numpy().decode() == "long.mkv"
        first = 40 * k
        assert int(piece["offset_frames"]) == first
        assert int(piece["offset_samples"]) == first * 1600
        n = int(piece["num_frames"])
        assert n == (60 if k < 3 else 50)
        # The same frames (JPEG bytes) and samples as the whole file's at those positions.
        assert (
            piece["frames"].numpy().tolist() == full["frames"][first : first + n].numpy().tolist()
        )
        np.testing.assert_array_equal(
            piece["waveform"].numpy(),
            full["waveform"][first * 1600 : first * 1600 + n * 1600].numpy(),
        )
        assert int(records.video_id(piece)) == int(records.video_id(full))


def test_whole_file_records_keep_their_bytes(long_file):
    """Records of short files carry no piece fields, so datasets prepared by versions without
    pieces stay valid."""
    item = sources.SourceItem(path=str(long_file), id="long.mkv", label="", split="train")
    _, whole = prepare.process_item(item, -1, dataclasses.replace(CONFIG, max_record_s=None))
    example = tf.train.SequenceExample.FromString(whole)
    assert not {"source_id", "offset_frames", "offset_samples"} & set(example.context.feature)


def _prepare_long_and_short(long_file: Path, tmp_path: Path) -> tuple[Path, Manifest]:
    """The 17 s file (4 pieces of 6 s) and a 3 s one, label ``clips``, prepared."""
    folder = tmp_path / "in" / "clips"
    folder.mkdir(parents=True)
    (folder / "long.mkv").symlink_to(long_file)
    write_counting_video(folder / "short.mkv", 3.0)
    out = tmp_path / "prepared"
    config = IngestConfig(fps=10.0, short_side=32, max_record_s=6.0, record_overlap_s=2.0)
    return out, prepare.prepare_dataset(
        tmp_path / "in", out, config, options=prepare.RunOptions(progress=False)
    )


def test_prepared_pieces_are_counted_checked_and_share_a_video_id(long_file, tmp_path):
    out, manifest = _prepare_long_and_short(long_file, tmp_path)
    assert [(e.id, e.records) for e in manifest.written] == [
        ("clips/long.mkv", 4),
        ("clips/short.mkv", 1),
    ]
    assert manifest.splits["train"].records == 5
    assert Manifest.read(out).config.max_record_s == 6.0
    assert integrity.check_shards(out) == []
    ids = {}
    for raw in tf.data.TFRecordDataset([str(p) for p in out.glob("train-*.tfrecord")]):
        record = records.parse(raw)
        ids[record["id"].numpy().decode()] = int(records.video_id(record))
    assert sorted(ids) == [f"clips/long.mkv@{k:05d}" for k in range(4)] + ["clips/short.mkv"]
    assert len({ids[f"clips/long.mkv@{k:05d}"] for k in range(4)}) == 1
    assert ids["clips/short.mkv"] != ids["clips/long.mkv@00000"]


def test_pieces_spilled_by_a_worker_equal_the_returned_list(long_file, tmp_path):
    item = sources.SourceItem(path=str(long_file), id="long.mkv", label="", split="train")
    entry, listed = prepare.process_item(item, -1, CONFIG)
    spilled_entry, spilled = prepare.process_item(item, -1, CONFIG, spill_dir=str(tmp_path))
    assert isinstance(spilled, prepare.SpilledRecords) and spilled.count == 4
    assert spilled_entry == entry
    assert list(spilled) == listed
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(p).name for p in spilled.paths]


class _ObjectStoreWriter:
    """A ``tf.io.TFRecordWriter`` that counts bytes as TensorFlow's ``gs://`` writer uploads
    them: every flush or close with new data uploads the whole object again."""

    uploaded = 0
    real = tf.io.TFRecordWriter

    def __init__(self, path):
        self.path, self.writer, self.dirty = path, self.real(path), False

    def write(self, record):
        self.writer.write(record)
        self.dirty = True

    def _sync(self):
        if self.dirty:
            type(self).uploaded += Path(self.path).stat().st_size
            self.dirty = False

    def flush(self):
        self.writer.flush()
        self._sync()

    def close(self):
        self.writer.close()
        self._sync()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_spilled_pieces_are_uploaded_once_each(long_file, tmp_path, monkeypatch):
    """On an object store (``gs://``) each spilled piece is uploaded once: no spill object is
    flushed again as it grows, which would upload a long file's pieces quadratically."""
    monkeypatch.setattr(_ObjectStoreWriter, "uploaded", 0)
    monkeypatch.setattr(tf.io, "TFRecordWriter", _ObjectStoreWriter)
    item = sources.SourceItem(path=str(long_file), id="long.mkv", label="", split="train")
    _, spilled = prepare.process_item(item, -1, CONFIG, spill_dir=str(tmp_path))
    assert spilled.count == 4
    stored = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert _ObjectStoreWriter.uploaded == stored


def test_workers_write_the_same_shards_and_leave_no_spill(long_file, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mkv", "b.mkv"):
        (folder / name).symlink_to(long_file)
    write_counting_video(folder / "short.mkv", 3.0)
    config = IngestConfig(
        fps=10.0, short_side=32, max_record_s=6.0, record_overlap_s=2.0, num_shards=1
    )
    quiet = prepare.RunOptions(progress=False)
    prepare.prepare_dataset(folder, tmp_path / "one", config, workers=1, options=quiet)
    prepare.prepare_dataset(folder, tmp_path / "two", config, workers=2, options=quiet)
    shards = sorted(p.name for p in (tmp_path / "one").glob("*.tfrecord"))
    assert shards == ["train-00000-of-00001.tfrecord"]
    for name in shards:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    for out in ("one", "two"):
        assert not list((tmp_path / out).rglob(".spill-*"))


def test_verify_rebuilds_with_the_datasets_own_record_length(long_file, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "long.mkv").symlink_to(long_file)
    out = tmp_path / "prepared"
    config = IngestConfig(fps=10.0, short_side=32, max_record_s=6.0, record_overlap_s=2.0)
    prepare.prepare_dataset(folder, out, config, options=prepare.RunOptions(progress=False))
    (shard,) = out.glob("train-*.tfrecord")
    original = shard.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    shard.write_bytes(bytes(flipped))
    found, left = prepare.verify_dataset(out, progress=False)
    assert [p.file for p in found] == [str(shard)] and left == []
    assert shard.read_bytes() == original  # rebuilt as 6 s pieces, not the default 30 s


def test_evaluation_takes_a_long_files_pieces_as_one_file(long_file, tmp_path, caplog):
    """Features pool the windows of all pieces of a file under its id, and a few-shot
    subset draws files, writing every piece of a chosen long file: a piece is not a file of
    its own, so a subset never holds one piece alone and retrieval never scores pieces of
    one file apart."""
    from avts_tf.evaluation import features, records_io

    out, _ = _prepare_long_and_short(long_file, tmp_path)

    feats = features.extract(
        out,
        lambda r: tf.reshape(tf.cast(r["offset_samples"], tf.float32), [1, 1]),
        lambda x: x,
        progress=False,
    )
    assert feats.ids.tolist() == ["clips/long.mkv", "clips/short.mkv"]
    assert feats.file_index.tolist() == [0, 0, 0, 0, 1]
    assert feats.features[:, 0].tolist() == [0.0, 64000.0, 128000.0, 192000.0, 0.0]
    assert "skipped" not in caplog.text  # 5 records read, none skipped (not 5 - 2 files)

    chosen = {}
    for seed in range(6):
        subset = records_io.few_shot_subset(out, tmp_path / f"subset{seed}", 1, "train", seed)
        ids = [
            records.parse(raw)["id"].numpy().decode()
            for raw in tf.data.TFRecordDataset([str(p) for p in subset.glob("train-*.tfrecord")])
        ]
        written = [e.id for e in Manifest.read(subset).written]
        chosen[seed] = (ids, written)
    assert set(map(str, chosen.values())) == {
        str(([f"clips/long.mkv@{k:05d}" for k in range(4)], ["clips/long.mkv"])),
        str((["clips/short.mkv"], ["clips/short.mkv"])),
    }


def test_the_hard_limit_counts_per_piece_while_a_worker_writes_pieces(tmp_path, monkeypatch):
    """The parent gives up on a worker after the hard limit without progress, not after
    the hard limit in all: a long file whose worker keeps appending pieces to its spill
    file is waited for."""
    import concurrent.futures
    import threading
    import time

    monkeypatch.setattr(prepare, "HARD_LIMIT_MARGIN_S", 0.0)  # hard limit: 2 x 1 s
    long = sources.SourceItem(str(tmp_path / "long.mkv"), "clips/long.mkv", "clips")
    other = sources.SourceItem(str(tmp_path / "other.mkv"), "clips/other.mkv", "clips")
    spill = tmp_path / f"{prepare._spill_prefix(long)}0.tmp-1"

    def worker(future, beats: int) -> None:
        for k in range(beats):  # a piece every 0.3 s, 3 s in all
            time.sleep(0.3)
            spill.write_bytes(b"x" * (k + 1))
        future.set_result("records")

    def started(beats: int) -> concurrent.futures.Future:
        future = concurrent.futures.Future()
        threading.Thread(target=worker, args=(future, beats), daemon=True).start()
        return future

    assert prepare._result(started(10), long, 1.0, str(tmp_path)) == "records"
    with pytest.raises(concurrent.futures.TimeoutError):  # another file's pieces
        prepare._result(started(10), other, 1.0, str(tmp_path))
    with pytest.raises(concurrent.futures.TimeoutError):  # no spill folder: no heartbeat
        prepare._result(started(10), long, 1.0, None)


def test_a_full_disk_while_spilling_leaves_no_spill_file(long_file, tmp_path, monkeypatch):
    real = tf.io.TFRecordWriter
    opened = []

    class FullDiskOnThirdPiece:
        def __init__(self, path):
            opened.append(path)
            self.writer = real(path)

        def write(self, record):
            if len(opened) == 3:
                raise OSError(28, "No space left on device")
            self.writer.write(record)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.writer.close()

    monkeypatch.setattr(tf.io, "TFRecordWriter", FullDiskOnThirdPiece)
    item = sources.SourceItem(path=str(long_file), id="long.mkv", label="", split="train")
    with pytest.raises(OSError, match="No space left"):
        prepare.process_item(item, -1, CONFIG, spill_dir=str(tmp_path))
    assert len(opened) == 3 and list(tmp_path.iterdir()) == []
