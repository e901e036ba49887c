"""Fingerprinting: the distortions do what they say, identification scores by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avts_tf.data.ingestion import synthetic
from avts_tf.data.manifest import Manifest
from avts_tf.errors import UserError
from avts_tf.evaluation import fingerprint, media_edit


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("fingerprint_world")
    synthetic.generate_synthetic_dataset(
        root,
        num_videos=1,
        seed=5,
        duration_s=3.0,
        fps=16.0,
        size=32,
        num_classes=1,
        test_fraction=0.0,
    )
    (video,) = root.rglob("*.mp4")
    return video


def test_identification_by_hand():
    database = np.eye(3)
    queries = np.array([[0.9, 0.1, 0.0], [0.6, 0.5, 0.0], [0.1, 0.2, 0.3]])
    # Ranks of the truths (0, 1, 2): 1, 2 (0.6 beats 0.5), 1.
    got = fingerprint.identification(queries, database, np.array([0, 1, 2]))
    assert got == {"top1": pytest.approx(2 / 3), "mAP": pytest.approx((1 + 0.5 + 1) / 3)}


def test_zmax_fusion_by_hand():
    database = {"video": np.eye(3), "audio": np.eye(3)}
    # Video similarities [0.2, 0.4, 0.3]: mean 0.3, std sqrt(0.02 / 3) -> z [-sqrt(1.5),
    # sqrt(1.5), 0]; audio [0.9, 0, 0]: mean 0.3, std sqrt(0.18) -> z [sqrt(2), -sqrt(0.5),
    # -sqrt(0.5)]. The max rule keeps [sqrt(2), sqrt(1.5), 0]: the confident audio match wins.
    queries = {"video": np.array([[0.2, 0.4, 0.3]]), "audio": np.array([[0.9, 0.0, 0.0]])}
    np.testing.assert_allclose(
        fingerprint.fused_scores(queries, database, "zmax"),
        [[np.sqrt(2), np.sqrt(1.5), 0.0]],
        rtol=1e-12,
        atol=1e-12,
    )
    # A modality whose similarities are all equal says nothing (z = 0, not NaN).
    flat = {"video": np.array([[0.5, 0.5, 0.5]]), "audio": np.array([[0.1, 0.2, 0.3]])}
    np.testing.assert_allclose(
        fingerprint.fused_scores(flat, database, "zmax"),
        [[0.0, 0.0, np.sqrt(1.5)]],
        rtol=1e-12,
        atol=1e-12,
    )
    both = {"both": np.array([[0.6, 0.8]])}
    assert fingerprint.fused_scores(both, {"both": np.eye(2)}).tolist() == [[0.6, 0.8]]
    with pytest.raises(ValueError, match="unknown fusion 'sum'; choose one of concat, zmax"):
        fingerprint.fused_scores(queries, database, "sum")


def test_a_reused_work_dir_never_serves_another_files_copy(source, tmp_path):
    other = tmp_path / "other.mp4"
    clip = media_edit.read(source)
    fingerprint.distort(source, other, "brightness", seed=9)  # another file, same length
    work = tmp_path / "work"
    first = fingerprint.distorted_copies([source], ["audio_noise"], work)
    again = fingerprint.distorted_copies([source], ["audio_noise"], work)
    assert again == first  # reused
    second = fingerprint.distorted_copies([other], ["audio_noise"], work)
    assert second["audio_noise"][0] != first["audio_noise"][0]
    frames = media_edit.read(second["audio_noise"][0]).frames
    expected = media_edit.read(other).frames
    assert (
        np.abs(frames.astype(int) - expected.astype(int)).mean()
        < np.abs(frames.astype(int) - clip.frames.astype(int)).mean()
    )


def test_distortions_change_what_they_name(source, tmp_path):
    original = media_edit.read(source)
    out = {}
    for name in fingerprint.DISTORTIONS:
        fingerprint.distort(source, tmp_path / f"{name}.mp4", name, seed=1)
        out[name] = media_edit.read(tmp_path / f"{name}.mp4")
    frames, audio_len = len(original.frames), len(original.audio)
    assert len(out["speed_up"].frames) == int(frames / 1.1)
    assert len(out["slow_down"].frames) == int(frames / 0.9)
    assert abs(len(out["speed_up"].audio) - audio_len / 1.1) <= 2048  # AAC frames of 1024
    for name in ("low_bitrate", "crop_resize", "brightness", "audio_noise"):
        assert out[name].frames.shape == original.frames.shape, name
    gain = out["brightness"].frames.mean() / original.frames.mean()
    assert gain == pytest.approx(1.4, abs=0.15) or gain == pytest.approx(0.6, abs=0.1)
    n = min(audio_len, len(out["audio_noise"].audio))
    noise = out["audio_noise"].audio[:n] - original.audio[:n]
    snr = 10 * np.log10(np.mean(original.audio[:n] ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(10.0, abs=1.5)
    reencoded = tmp_path / "plain.mp4"
    media_edit.write(reencoded, original)
    assert (tmp_path / "low_bitrate.mp4").stat().st_size < reencoded.stat().st_size
    with pytest.raises(UserError, match="unknown distortion 'blur'; valid: low_bitrate, "):
        fingerprint.distort(source, tmp_path / "x.mp4", "blur")


def test_eval_fingerprint_tool(tiny_run, tiny_prepared, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tiny import REPO_ROOT

    out = tmp_path / "f.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [
            sys.executable,
            "tools/eval_fingerprint.py",
            f"--checkpoint={tiny_run}",
            f"--data={tiny_prepared}",
            "--distortions=brightness,audio_noise",
            "--num_clips=2",
            "--random_init",
            f"--output_json={out}",
            f"--work_dir={tmp_path / 'work'}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == {"pretrained", "random init"}
    mine = results["pretrained"]
    assert set(mine) == {"brightness", "audio_noise"}
    for scores in mine.values():
        assert set(scores) == {
            "top1",
            "mAP",
            "zmax_top1",
            "concat_top1",
            "video_top1",
            "audio_top1",
        }
        assert scores["top1"] == scores["concat_top1"]  # the default fusion
        assert scores["top1"] in (0.0, 0.5, 1.0)  # 2 test videos query 2 + 6 files
        # One relevant file per query: mAP = mean(1 / rank), at least the top-1 share.
        assert scores["top1"] <= scores["mAP"] <= 1.0
    assert proc.stdout.strip().splitlines()[-1] == (
        f"fingerprint: top1={np.mean([v['top1'] for v in mine.values()]):.3f} "
        f"mAP={np.mean([v['mAP'] for v in mine.values()]):.3f}"
    )
    copies = sorted(p.name for p in (tmp_path / "work").iterdir())
    assert [name[: -len("_0123456789.mp4")] for name in copies] == [
        "audio_noise_0000",
        "audio_noise_0001",
        "brightness_0000",
        "brightness_0001",
    ]
    bad = subprocess.run(
        [sys.executable, "tools/eval_fingerprint.py", f"--checkpoint={tmp_path / 'none'}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ")


def test_videos_too_short_for_a_clip_are_left_out_not_fatal(
    tiny_run, tiny_prepared, tmp_path, caplog
):
    import json

    from eval_helpers import run_in_process

    data = tmp_path / "data"
    data.mkdir()
    manifest = json.loads((tiny_prepared / "manifest.json").read_text())
    by_split: dict[str, list] = {}
    for entry in manifest["written"]:
        by_split.setdefault(entry["split"], []).append(entry)
    short_query, short_distractor = by_split["test"][0], by_split["train"][0]
    for entry in (short_query, short_distractor):
        entry["duration"] = 0.2  # Under one 0.5 s clip (4 frames at 8 fps).
    silent_distractor = by_split["train"][1]
    silent_distractor["num_samples"] = 0  # A video without an audio track.
    (data / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "f.json"
    code, _, err = run_in_process(
        "eval_fingerprint",
        f"--checkpoint={tiny_run}",
        f"--data={data}",
        "--distortions=brightness",
        "--num_clips=2",
        f"--output_json={out}",
        f"--work_dir={tmp_path / 'work'}",
    )
    assert code == 0, err
    assert caplog.messages[:3] == [
        f"1 query video(s) shorter than 0.68 s left out (e.g. {short_query['path']})",
        f"1 distractor video(s) shorter than 0.50 s left out (e.g. {short_distractor['path']})",
        f"1 distractor file(s) without video or sound left out (e.g. {silent_distractor['path']})",
    ]
    assert json.loads(out.read_text())["pretrained"]["brightness"]["top1"] in (0.0, 1.0)
    assert len(list((tmp_path / "work").iterdir())) == 1  # one query left: one copy
    for entry in by_split["test"]:
        entry["duration"] = 0.2
    (data / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_in_process(
        "eval_fingerprint", f"--checkpoint={tiny_run}", f"--data={data}", "--distortions=brightness"
    )
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"error: no video with sound in split 'test' of {data} is long enough to query with "
        "(0.68 s: one clip, also 10% faster); give longer videos with an audio track"
    )


def test_a_distractor_split_holding_the_queries_adds_no_second_copy(
    tiny_run, tiny_prepared, tmp_path
):
    """``--distractor_split`` the query split: each original is in the database once.

    An original is not listed again as a distractor, so it is fingerprinted once and
    counted once in the printed database (a second, identical copy would leave the scores
    right only by the accident of a stable sort ranking it second).
    """
    from eval_helpers import run_in_process

    originals = [Path(e.path) for e in Manifest.read(tiny_prepared).records("test")]
    others = [Path(e.path) for e in Manifest.read(tiny_prepared).records("train")]
    assert (
        fingerprint.distinct_distractors(
            originals, [originals[1], others[0], others[0], originals[0], others[1]]
        )
        == others[:2]
    )
    code, out, err = run_in_process(
        "eval_fingerprint",
        f"--checkpoint={tiny_run}",
        f"--data={tiny_prepared}",
        "--query_split=test",
        "--distractor_split=test",
        "--distortions=brightness",
        "--num_clips=2",
        f"--work_dir={tmp_path / 'work'}",
    )
    assert code == 0, err
    assert (
        f"{len(originals)} queries per distortion, database of {len(originals)} originals + "
        "0 distractors" in out
    )
