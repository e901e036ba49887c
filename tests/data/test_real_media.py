"""Ingestion of real recordings from ``../shared/data`` (skipped where absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from avts_tf.data import records
from avts_tf.data.ingestion import prepare
from avts_tf.data.ingestion.media import decode_media
from avts_tf.data.manifest import IngestConfig

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
REAL_AV = DATA / "real_av"
FSDD = DATA / "fsdd" / "recordings"
SILENT = {"av1_video.mkv", "h265_video.mp4", "h264_10bits.mp4"}
ALL = SILENT | {"nasa_13013.mp4", "mmaction2_test.avi", "bento.mp4"}


def need(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"real media not found at {path} (the shared data folder is absent)")


def test_real_av_require_audio(tmp_path):
    need(REAL_AV)
    manifest = prepare.prepare_dataset(
        REAL_AV, tmp_path / "out", options=prepare.RunOptions(progress=False)
    )
    assert manifest.summary["files"] == len(ALL)
    skipped = {Path(e.path).name: e.kind for e in manifest.skipped}
    assert skipped == dict.fromkeys(SILENT, "no_audio")
    written = {Path(e.path).name: e for e in manifest.written}
    assert set(written) == ALL - SILENT
    for entry in written.values():
        assert entry.num_samples == round(entry.num_frames * 16000 / 8)
    # Portrait 320x568 at 10 fps for 1.1 s: 9 frames at 8 fps, short side 40.
    bento = written["bento.mp4"]
    assert (bento.num_frames, bento.width, bento.height) == (9, 40, 71)
    # 13 s; the best streams are the 480x270 video and the 16 kHz audio.
    nasa = written["nasa_13013.mp4"]
    assert (nasa.height, nasa.width) == (40, 71) and 104 <= nasa.num_frames <= 105
    assert (written["mmaction2_test.avi"].height, written["mmaction2_test.avi"].width) == (40, 53)
    (split,) = manifest.splits.values()
    parsed = [
        records.parse(s)
        for f in split.shards
        for s in tf.data.TFRecordDataset(str(tmp_path / "out" / f.file))
    ]
    assert len(parsed) == 3
    for rec in parsed:
        frames = rec["frames"].numpy()
        image = tf.io.decode_jpeg(frames[0]).numpy()
        assert image.shape == (int(rec["height"]), int(rec["width"]), 3)
        assert rec["waveform"].shape[0] == int(rec["num_samples"])


def test_real_av_video_only_allowed(tmp_path):
    need(REAL_AV)
    manifest = prepare.prepare_dataset(
        REAL_AV,
        tmp_path / "out",
        IngestConfig(require_audio=False),
        options=prepare.RunOptions(progress=False),
    )
    assert manifest.skipped == ()
    written = {Path(e.path).name: e for e in manifest.written}
    assert set(written) == ALL
    for name in SILENT:
        assert written[name].num_samples == 0 and written[name].num_frames >= 8
    assert written["av1_video.mkv"].num_frames == 40  # 5 s, no duration in the header.
    assert (written["h264_10bits.mp4"].height, written["h264_10bits.mp4"].width) == (40, 40)


def test_real_av_stream_choice():
    need(REAL_AV)
    nasa = REAL_AV / "nasa_13013.mp4"
    first = decode_media(nasa, video_stream=0, audio_stream=0)  # 320x180 25 fps, 8 kHz.
    best = decode_media(nasa)
    assert (first.height, first.width) == (40, 71)
    # 13.0 s vs 13.013 s of video: 104 vs 105 frames at 8 fps.
    assert (len(first.jpeg_frames), len(best.jpeg_frames)) == (104, 105)
    assert first.audio.shape == (104 * 2000,) and best.audio.shape == (105 * 2000,)
    assert np.abs(first.audio.astype(np.float32)).mean() > 10  # Not silence.
    bento = decode_media(REAL_AV / "bento.mp4")
    # Audio (1.0 s) is shorter than video (1.1 s): the tail is zero padding.
    assert bento.audio.shape == (18000,) and not bento.audio[-1000:].any()


def test_fsdd_subset(tmp_path):
    need(FSDD)
    root = tmp_path / "fsdd"
    root.mkdir()
    chosen = sorted(FSDD.glob("*_george_*.wav"))
    chosen = [p for p in chosen if int(p.stem.split("_")[2]) in (0, 1, 7, 8)]
    assert len(chosen) == 40
    for path in chosen:
        (root / path.name).symlink_to(path)
    manifest = prepare.prepare_dataset(
        root, tmp_path / "out", options=prepare.RunOptions(progress=False)
    )
    assert manifest.config.layout == "fsdd" and not manifest.config.require_video
    assert manifest.skipped == () and manifest.labels == tuple(str(d) for d in range(10))
    assert {s: v.records for s, v in manifest.splits.items()} == {"test": 20, "train": 20}
    for entry in manifest.written:
        assert entry.num_frames == 0 and entry.num_samples > 1000
        # 8 kHz recordings resampled to 16 kHz: twice the samples (up to filter edges).
        frames = _wav_frames(Path(entry.path))
        assert abs(entry.num_samples - 2 * frames) <= 4


def _wav_frames(path: Path) -> int:
    import wave

    with wave.open(str(path)) as w:
        return w.getnframes()
