"""The Apache Beam runner of prepare_data: the same shards and manifest as the local pool."""

from __future__ import annotations

import collections
import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("apache_beam")

import tensorflow as tf  # noqa: E402
from test_ingest import write_clip  # noqa: E402
from tiny import REPO_ROOT  # noqa: E402

from avts_tf.data.ingestion import beam_runner, prepare, sources  # noqa: E402
from avts_tf.data.manifest import DEFAULTS, IngestConfig  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
REAL_AV = DATA / "real_av"
SILENT = {"av1_video.mkv", "h265_video.mp4", "h264_10bits.mp4"}
DIRECT_2 = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
SHARDS = [f"train-{i:05d}-of-00003.tfrecord" for i in range(3)]


def _records(out: Path) -> collections.Counter:
    return collections.Counter(
        bytes(r.numpy()) for name in SHARDS for r in tf.data.TFRecordDataset(str(out / name))
    )


def _state(out: Path) -> dict[str, bytes]:
    """Every file of a prepared folder but the lock, by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """The real clips plus a truncated mp4 and a text file named .mp4."""
    if not REAL_AV.is_dir():
        pytest.skip(f"real media not found at {REAL_AV} (the shared data folder is absent)")
    folder = tmp_path_factory.mktemp("media")
    for path in REAL_AV.iterdir():
        shutil.copyfile(path, folder / path.name)
    (folder / "truncated.mp4").write_bytes((REAL_AV / "bento.mp4").read_bytes()[:20000])
    (folder / "notes.mp4").write_text("not a video\n")
    return folder


@pytest.mark.slow
def test_direct_runner_matches_local_pool_and_resumes(media, tmp_path):
    local, beam = tmp_path / "local", tmp_path / "beam"
    expected = prepare.prepare_dataset(
        media,
        local,
        IngestConfig(num_shards=3),
        workers=1,
        options=prepare.RunOptions(progress=False),
    )
    manifest = beam_runner.prepare_dataset_beam(
        media,
        beam,
        IngestConfig(num_shards=3),
        beam_args=DIRECT_2,
        options=prepare.RunOptions(progress=False),
    )
    # Every input accounted for: 3 clips with audio written, 3 silent ones and 2 broken
    # files skipped.
    assert sorted(Path(e.path).name for e in manifest.written) == [
        "bento.mp4",
        "mmaction2_test.avi",
        "nasa_13013.mp4",
    ]
    assert sorted((Path(e.path).name, e.kind) for e in manifest.skipped) == sorted(
        [(name, "no_audio") for name in SILENT]
        + [("notes.mp4", "not_media"), ("truncated.mp4", "truncated")]
    )
    assert manifest.to_dict() == expected.to_dict()
    assert sorted(p.name for p in beam.glob("*.tfrecord")) == SHARDS
    records = _records(beam)
    assert records == _records(local) and sum(records.values()) == 3
    assert max(records.values()) == 1
    # Shards, sidecars, config and manifest are byte-identical to the local pool's.
    reference = _state(local)
    assert _state(beam) == reference
    assert not (beam / ".ingest" / beam_runner.INPUTS_FILE).exists()

    # A killed run: one shard lost, a half-written temporary left behind.
    lost = beam / SHARDS[1]
    lost.unlink()
    (beam / f".{SHARDS[1]}.tmp-99999-deadbeef").write_bytes(b"half a shard")
    kept = {name: (beam / name).stat().st_mtime_ns for name in (SHARDS[0], SHARDS[2])}
    again = beam_runner.prepare_dataset_beam(
        media,
        beam,
        IngestConfig(num_shards=3),
        beam_args=DIRECT_2,
        options=prepare.RunOptions(progress=False),
    )
    assert {name: (beam / name).stat().st_mtime_ns for name in kept} == kept  # not rewritten
    assert again.to_dict() == expected.to_dict()
    assert _records(beam) == records
    assert _state(beam) == reference


def test_runner_and_option_errors(tmp_path):
    with pytest.raises(
        ValueError, match="choose one of DirectRunner, FlinkRunner, SparkRunner, DataflowRunner"
    ):
        beam_runner.parse_beam_options("Direct")
    with pytest.raises(ValueError, match="must not name a runner"):
        beam_runner.parse_beam_options("DirectRunner", "--runner=FlinkRunner")
    with pytest.raises(ValueError, match="Beam does not know --direct_num_worker;"):
        beam_runner.parse_beam_options("DirectRunner", "--direct_num_worker=2")
    with pytest.raises(ValueError, match="No closing quotation"):
        beam_runner.parse_beam_options("DirectRunner", "--job_name='x")
    assert beam_runner.parse_beam_options(
        "FlinkRunner", "--flink_master=localhost:8081 --environment_type=LOOPBACK"
    ) == ["--flink_master=localhost:8081", "--environment_type=LOOPBACK"]
    with pytest.raises(ValueError, match="give a gs:// --output"):
        beam_runner.prepare_dataset_beam(tmp_path, tmp_path / "out", runner="DataflowRunner")
    assert not (tmp_path / "out").exists()


def test_url_output_goes_through_gfile(tmp_path):
    """A URL output (TensorFlow's ``ram://`` standing in for ``gs://``) is written through
    ``tf.io.gfile``: the same bytes as the local pool's, and a re-run resumes."""
    if not REAL_AV.is_dir():
        pytest.skip(f"real media not found at {REAL_AV} (the shared data folder is absent)")
    media = tmp_path / "media"
    media.mkdir()
    for name in ("bento.mp4", "h265_video.mp4"):
        shutil.copyfile(REAL_AV / name, media / name)
    (media / "notes.mp4").write_text("not a video\n")
    expected = prepare.prepare_dataset(
        media,
        tmp_path / "local",
        IngestConfig(num_shards=2),
        options=prepare.RunOptions(progress=False),
    )
    url = f"ram://avts-test-{tmp_path.name}/ds"
    in_memory = ["--direct_running_mode=in_memory"]  # ram:// lives in this process only
    manifest = beam_runner.prepare_dataset_beam(
        media,
        url,
        IngestConfig(num_shards=2),
        beam_args=in_memory,
        options=prepare.RunOptions(progress=False),
    )
    assert manifest.to_dict() == expected.to_dict()
    assert [Path(e.path).name for e in manifest.written] == ["bento.mp4"]
    names = ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    state = {
        f"{folder}{name}": tf.io.gfile.GFile(f"{url}/{folder}{name}", "rb").read()
        for folder, name in [("", n) for n in names] + [(".ingest/", f"{n}.json") for n in names]
    }
    assert state == {key: (tmp_path / "local" / key).read_bytes() for key in state}
    tf.io.gfile.remove(f"{url}/{names[0]}")
    again = beam_runner.prepare_dataset_beam(
        media,
        url,
        IngestConfig(num_shards=2),
        beam_args=in_memory,
        options=prepare.RunOptions(progress=False),
    )
    assert again.to_dict() == expected.to_dict()
    assert tf.io.gfile.GFile(f"{url}/{names[0]}", "rb").read() == state[names[0]]
    assert sorted(tf.io.gfile.listdir(url)) == [".ingest", "manifest.json", *names]


def test_decoder_skips_a_crash_and_a_hang_like_the_pool(tmp_path, monkeypatch):
    """The Beam decode step's child process: a file that kills it is kind ``crash``, one
    that hangs past ``decode_timeout`` is kind ``timeout``; the next files decode."""
    for name in ("ok", "crash", "hang"):
        write_clip(tmp_path / "in" / f"{name}.mkv")
    helper = tmp_path / "helper"
    helper.mkdir()
    (helper / "bad_files.py").write_text(
        "import os\nimport time\n"
        "from avts_tf.data.ingestion.prepare import process_item as original\n\n\n"
        "def process_item(item, label_index, config, **options):\n"
        "    if item.id == 'crash.mkv':\n        os._exit(11)\n"
        "    if item.id == 'hang.mkv':\n        time.sleep(60)\n"
        "    return original(item, label_index, config, **options)\n"
    )
    monkeypatch.syspath_prepend(str(helper))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    monkeypatch.setattr(prepare, "process_item", __import__("bad_files").process_item)
    decoder = prepare.IsolatedDecoder(DEFAULTS, timeout=2.0)
    try:
        results = [
            decoder(sources.SourceItem(str(tmp_path / "in" / f"{name}.mkv"), f"{name}.mkv"), -1)
            for name in ("ok", "crash", "hang", "ok")
        ]
    finally:
        decoder.close()
    assert [entry.get("kind") for entry, _ in results] == [None, "crash", "timeout", None]
    assert results[0][1] is not None and results[0][1] == results[3][1]
    assert [data for _, data in results[1:3]] == [None, None]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--runner", "Foo"],
            "error: unknown --runner 'Foo'; choose one of local, DirectRunner, "
            "FlinkRunner, SparkRunner, DataflowRunner",
        ),
        (
            ["--beam_options=--direct_num_workers=2"],
            "error: --beam_options (--direct_num_workers=2) apply to a Beam runner, not the local "
            "pool; add --runner DirectRunner (or FlinkRunner, SparkRunner, DataflowRunner), "
            "or drop "
            "--beam_options",
        ),
        (
            ["--runner", "DirectRunner", "--workers", "2"],
            "error: --workers sets the local pool's processes, not DirectRunner's; drop it "
            "and give "
            "the runner's parallelism in --beam_options (e.g. --direct_num_workers=2 for "
            "DirectRunner)",
        ),
    ],
)
def test_cli_refuses_bad_runner_flags(tmp_path, args, message):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tools" / "prepare_data.py"),
            "--input",
            str(tmp_path),
            "--output",
            str(tmp_path / "out"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (proc.returncode, proc.stderr.strip().splitlines()[-1]) == (2, message)
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_long_files_pass_through_the_pipeline_as_spill_files(tmp_path):
    """A long file's pieces leave the decode step as a spill file under ``.ingest/`` (a path
    and a count, not the records), are written as the local pool writes them, and no spill
    file is left."""
    from test_segments import write_counting_video

    folder = tmp_path / "in"
    folder.mkdir()
    write_counting_video(folder / "long.mkv", 17.0)
    write_counting_video(folder / "short.mkv", 3.0)
    config = IngestConfig(fps=10.0, short_side=32, max_record_s=6.0, record_overlap_s=2.0)
    quiet = prepare.RunOptions(progress=False)
    state = tmp_path / "spill"
    state.mkdir()
    decoder = prepare.IsolatedDecoder(config, timeout=60.0, spill_dir=str(state))
    try:
        entry, data = decoder(sources.SourceItem(str(folder / "long.mkv"), "long.mkv"), -1)
    finally:
        decoder.close()
    assert isinstance(data, prepare.SpilledRecords) and data.count == entry["records"] == 4
    assert {Path(p).parent for p in data.paths} == {state}
    assert all(Path(p).name.startswith(".spill-") for p in data.paths)
    one_shard = dataclasses.replace(config, num_shards=1)
    expected = prepare.prepare_dataset(folder, tmp_path / "local", one_shard, options=quiet)
    shard = "train-00000-of-00001.tfrecord"
    local_bytes = (tmp_path / "local" / shard).read_bytes()
    manifest = beam_runner.prepare_dataset_beam(folder, tmp_path / "beam", one_shard, options=quiet)
    assert manifest.to_dict() == expected.to_dict()
    assert (tmp_path / "beam" / shard).read_bytes() == local_bytes
    assert not list((tmp_path / "beam").rglob(".spill-*"))
    # The heartbeat and the clean-up list spill files through tf.io.gfile, as on a gs://
    # output (a decode child cannot write to ``ram://``, which lives in one process).
    item = sources.SourceItem(str(folder / "long.mkv"), "long.mkv")
    prepare._SpillWriter(str(state), item).append(b"piece")
    assert prepare._grew_within(item, str(state), 60.0)
    assert not prepare._grew_within(sources.SourceItem("x", "other.mkv"), str(state), 60.0)
    prepare.remove_spill_files(str(state))
    assert not list(state.iterdir())
