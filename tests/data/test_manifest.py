"""The prepared-data format (avts_tf.data.manifest): round trip, versions, errors, ingestion."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from avts_tf.data import manifest
from avts_tf.data.manifest import (
    FORMAT_VERSION,
    IngestConfig,
    Manifest,
    ManifestError,
    Shard,
    SkippedEntry,
    SplitInfo,
    WrittenEntry,
)
from avts_tf.errors import UserError

CUT = WrittenEntry(
    id="v_000001_000003",
    split="test",
    path="/m/v.mkv",
    label="dog",
    start=1.0,
    end=3.0,
    shard="test-00000-of-00001.tfrecord",
    num_frames=16,
    num_samples=32000,
    height=40,
    width=53,
    duration=2.0,
    warnings=("decoded 1.90 s of the 2.00 s the container declares",),
)
WHOLE = WrittenEntry(
    id="a.mp4",
    split="train",
    path="/m/a.mp4",
    label="cat",
    shard="train-00000-of-00001.tfrecord",
    num_frames=8,
    num_samples=16000,
    height=40,
    width=40,
    duration=1.0,
)
SKIP = SkippedEntry(
    id="b.mp4",
    kind="no_audio",
    reason="no audio stream",
    split="train",
    path="/m/b.mp4",
    label="cat",
)


def example() -> Manifest:
    """A manifest with every field away from its default."""
    return Manifest(
        config=IngestConfig(
            fps=5.0,
            short_side=24,
            sample_rate=8000,
            jpeg_quality=80,
            video_stream=1,
            audio_stream=0,
            require_audio=False,
            require_video=True,
            num_shards=1,
            layout="youtube",
            fold=2,
            media_dir="/m",
        ),
        labels=("cat", "dog"),
        splits={
            "test": SplitInfo(1, (Shard("test-00000-of-00001.tfrecord", 1),)),
            "train": SplitInfo(1, (Shard("train-00000-of-00001.tfrecord", 1),)),
        },
        written=(CUT, WHOLE),
        skipped=(SKIP,),
        input="/m/list.csv",
        subset_of="/full",
    )


def test_round_trip_keeps_every_field(tmp_path):
    example().write(tmp_path / "d")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["manifest.json"]  # No temp.
    back = Manifest.read(tmp_path / "d")
    assert back == example()
    assert back.data_dir == str(tmp_path / "d")
    assert (back.fps, back.sample_rate, back.config.short_side) == (5.0, 8000, 24)
    assert back.config.media_dir == "/m" and back.config.layout == "youtube"
    assert back.labels == ("cat", "dog") and back.input == "/m/list.csv"
    assert back.subset_of == "/full" and back.format_version == FORMAT_VERSION == 1
    assert back.written == (CUT, WHOLE) and back.skipped == (SKIP,)
    assert back.records("test") == (CUT,) and back.records("val") == ()
    assert back.split_names == ["test", "train"]
    assert back.num_records("train") == 1 and back.num_records(["train", "test", "val"]) == 2
    assert back.count_shorter_than("test", 2.0) == 0
    assert back.count_shorter_than("test", 2.5) == 1
    assert back.summary == {
        "files": 3,
        "written": 2,
        "skipped": 1,
        "skipped_by_kind": {"no_audio": 1},
    }
    data = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert data["format_version"] == 1 and data["format"] == "avts_tf.records/1"
    assert data["written"][0] == {
        "path": "/m/v.mkv",
        "id": "v_000001_000003",
        "label": "dog",
        "split": "test",
        "start": 1.0,
        "end": 3.0,
        "records": 1,
        "num_frames": 16,
        "num_samples": 32000,
        "height": 40,
        "width": 53,
        "duration": 2.0,
        "warnings": ["decoded 1.90 s of the 2.00 s the container declares"],
        "shard": "test-00000-of-00001.tfrecord",
    }
    assert "start" not in data["written"][1] and "warnings" not in data["written"][1]
    assert data["skipped"] == [
        {
            "path": "/m/b.mp4",
            "id": "b.mp4",
            "label": "cat",
            "split": "train",
            "kind": "no_audio",
            "reason": "no audio stream",
        }
    ]


def test_remote_paths_go_through_gfile():
    example().write("ram://avts_manifest_test/d")
    assert manifest.exists("ram://avts_manifest_test/d")
    assert not manifest.exists("ram://avts_manifest_test/elsewhere")
    assert Manifest.read("ram://avts_manifest_test/d") == example()


def test_newer_or_bad_version_is_refused(tmp_path):
    data = {**example().to_dict(), "format_version": FORMAT_VERSION + 1}
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(
        ManifestError,
        match="format version 2, newer than this avts_tf reads "
        r"\(up to 1\); upgrade avts_tf",
    ) as err:
        Manifest.read(tmp_path)
    assert isinstance(err.value, UserError)  # The tools report it as one line.
    assert str(tmp_path / "manifest.json") in str(err.value)
    for bad in ("2", 0, True):
        data["format_version"] = bad
        (tmp_path / "manifest.json").write_text(json.dumps(data))
        with pytest.raises(ManifestError, match="is not a version number"):
            Manifest.read(tmp_path)


def test_missing_or_broken_manifest_names_the_folder_and_the_fix(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(
        FileNotFoundError,
        match=re.escape(
            f"{missing}/manifest.json not found: {missing} is not a prepared dataset. "
            f"Run tools/prepare_data.py --input ... --output {missing}."
        ),
    ):
        Manifest.read(missing)
    assert not manifest.exists(missing)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="is not valid JSON"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("[]")
    with pytest.raises(ManifestError, match="holds no JSON object"):
        Manifest.read(tmp_path)


def test_manifest_without_version_reads_as_version_1(tmp_path):
    """As ingestion wrote it before ``format_version`` existed."""
    old = example().to_dict()
    del old["format_version"]
    (tmp_path / "manifest.json").write_text(json.dumps(old, indent=1))
    back = Manifest.read(tmp_path)
    assert back.format_version == 1 and back == example()
    # A hand-written minimal one (as in the split checks): defaults fill the rest.
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "config": {"fps": 10, "sample_rate": 22050},
                "written": [{"id": "a.mp4", "path": "/d/a.mp4", "split": "val"}],
            }
        )
    )
    back = Manifest.read(tmp_path)
    assert (back.fps, back.sample_rate, back.config.short_side) == (10.0, 22050, 40)
    assert back.written == (WrittenEntry(id="a.mp4", split="val", path="/d/a.mp4"),)
    assert back.splits == {} and back.split_names == [] and back.num_records("val") == 0
    assert back.count_shorter_than("val", 0.5) == 1  # No duration: counted as too short.


def test_check_sample_rate(tmp_path):
    example().write(tmp_path)
    prepared = Manifest.read(tmp_path)
    prepared.check_sample_rate(8000)
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"{tmp_path} stores audio at 8000 Hz but the log-mel spec expects 16000 Hz; set "
            "LogMelSpec.sample_rate = 8000 or re-run prepare_data with --sample_rate."
        ),
    ):
        prepared.check_sample_rate(16000)


def test_ingestion_defaults_are_defined_once():
    import inspect

    from avts_tf.data.ingestion import media, prepare

    assert manifest.DEFAULTS == IngestConfig() and prepare.IngestConfig is IngestConfig
    config = inspect.signature(prepare.prepare_dataset).parameters["config"]
    assert config.default is manifest.DEFAULTS
    params = inspect.signature(media.decode_media).parameters
    for name in ("fps", "short_side", "sample_rate", "jpeg_quality"):
        assert params[name].default == getattr(manifest.DEFAULTS, name), name


def test_written_by_ingestion_of_the_synthetic_set(tiny_prepared):
    """``tiny_prepared``: 8 synthetic 3 s videos at 8 fps, 6 train and 2 test."""
    prepared = Manifest.read(tiny_prepared)
    on_disk = json.loads((tiny_prepared / "manifest.json").read_text())
    assert on_disk["format_version"] == FORMAT_VERSION
    assert prepared.to_dict() == on_disk
    assert (prepared.fps, prepared.sample_rate, prepared.config.short_side) == (8.0, 16000, 32)
    assert prepared.config == dataclasses.replace(
        manifest.DEFAULTS, short_side=32, layout=prepared.config.layout, require_video=True
    )
    assert len(prepared.labels) == 2
    assert prepared.split_names == ["test", "train"]
    assert (prepared.num_records("train"), prepared.num_records("test")) == (6, 2)
    assert len(prepared.written) == 8 and prepared.skipped == ()
    assert prepared.summary == {"files": 8, "written": 8, "skipped": 0, "skipped_by_kind": {}}
    for split, count in (("train", 6), ("test", 2)):
        entries = prepared.records(split)
        assert len(entries) == count and all(e.split == split for e in entries)
        assert sum(s.records for s in prepared.splits[split].shards) == count
        assert {e.shard for e in entries} == {s.file for s in prepared.splits[split].shards}
        for shard in prepared.splits[split].shards:
            assert (tiny_prepared / shard.file).is_file()
    for entry in prepared.written:
        assert (entry.num_frames, entry.num_samples, entry.duration) == (24, 48000, 3.0)
        assert (entry.height, entry.width) == (32, 32) and entry.label in prepared.labels
    assert prepared.count_shorter_than("train", 3.0) == 0
    assert prepared.count_shorter_than("train", 3.5) == 6
    prepared.check_sample_rate(16000)


def test_records_without_a_clip_window_are_counted_by_cause(tmp_path):
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "config": {"fps": 10, "sample_rate": 1000},
                "written": [
                    {"id": "ok.mp4", "duration": 2.0, "num_frames": 20, "num_samples": 2000},
                    {"id": "silent.mp4", "duration": 2.0, "num_frames": 20, "num_samples": 0},
                    {"id": "speech.wav", "duration": 2.0, "num_frames": 0, "num_samples": 2000},
                    {"id": "short.mp4", "duration": 0.5, "num_frames": 5, "num_samples": 500},
                    {
                        "id": "short_audio.mp4",
                        "duration": 2.0,
                        "num_frames": 20,
                        "num_samples": 900,
                    },
                ],
            }
        )
    )
    found = Manifest.read(tmp_path)
    assert found.without_clip_window("train", 1.0) == {
        "without video": 1,
        "without audio": 1,
        "shorter": 2,
    }
    assert found.without_clip_window("train", 1.0, needs_audio=False) == {
        "without video": 1,
        "shorter": 1,
    }
    found.require_clip_windows("train", 1.0)  # ok.mp4 holds one.
    with pytest.raises(
        UserError,
        match=r"^no record of the evaluation split 'train' of .* "
        r"holds one 2\.50 s clip window of video and audio \(5 "
        r"record\(s\): 1 without video, 1 without audio, 3 "
        r"shorter\); prepare longer videos with an audio track",
    ):
        found.require_clip_windows("train", 2.5, "evaluation")
