"""Offset estimation: sign convention, grid and refinement, and the shifted-copy writer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types

import av
import numpy as np
import pytest
import tensorflow as tf
from tiny import REPO_ROOT

from avts_tf.data.audio_features import LogMelSpec
from avts_tf.data.ingestion import synthetic
from avts_tf.data.ingestion.media import probe_duration
from avts_tf.data.pipeline import ClipSpec
from avts_tf.errors import UserError
from avts_tf.evaluation import offset
from avts_tf.tasks.sync.objectives import ContrastiveSync

FPS = 8.0
SPEC = ClipSpec(
    num_frames=8, crop_size=32, log_mel=LogMelSpec(mel_bins=16, window_s=0.04, hop_s=0.02)
)


@pytest.fixture(scope="module")
def world_video(tmp_path_factory):
    root = tmp_path_factory.mktemp("offset_world")
    synthetic.generate_synthetic_dataset(
        root,
        num_videos=1,
        seed=11,
        duration_s=6.0,
        fps=16.0,
        size=32,
        num_classes=1,
        test_fraction=0.0,
    )
    (video,) = root.rglob("*.mp4")
    return video


def _mono(path):
    with av.open(str(path)) as container:
        chunks = [f.to_ndarray() for f in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    return np.concatenate([c.mean(axis=0) for c in chunks]), rate


@pytest.mark.parametrize("shift_s", [0.25, -0.375])
def test_write_shifted_moves_the_audio_by_the_offset(world_video, tmp_path, shift_s):
    target = tmp_path / "shifted.mp4"
    offset.write_shifted(world_video, target, shift_s)
    original, rate = _mono(world_video)
    moved, moved_rate = _mono(target)
    assert moved_rate == rate
    n = min(len(original), len(moved))
    lags = np.arange(-int(0.5 * rate), int(0.5 * rate))
    a, b = original[:n], moved[:n]
    score = [
        np.dot(a[max(0, -lag) : n - max(0, lag)], b[max(0, lag) : n - max(0, -lag)]) for lag in lags
    ]
    assert abs(lags[int(np.argmax(score))] - shift_s * rate) <= 2
    with av.open(str(world_video)) as c1, av.open(str(target)) as c2:
        assert c2.streams.video[0].frames == c1.streams.video[0].frames


class _EventTowers:
    """Hand-made sync towers: where in the clip things happen, in eight time bins.

    Video: the change of each frame's brightness from the previous one (flashes, hops);
    audio: the rise of each log-mel frame's energy (onsets), averaged into eight bins.
    Both are centred and L2-normalised, so in-sync pairs are close.
    """

    @staticmethod
    def video_tower(clips, training=False):
        level = tf.reduce_mean(clips, axis=[2, 3, 4])
        change = tf.abs(level - tf.concat([level[:, :1], level[:, :-1]], axis=1))
        return change - tf.reduce_mean(change, axis=1, keepdims=True)

    @staticmethod
    def audio_tower(log_mel, training=False):
        energy = tf.reduce_mean(log_mel[..., 0], axis=2)
        rise = tf.nn.relu(energy - tf.concat([energy[:, :1], energy[:, :-1]], axis=1))
        frames = rise.shape[1]
        bins = tf.reshape(rise[:, : frames // 8 * 8], [-1, 8, frames // 8])
        binned = tf.reduce_max(bins, axis=2)
        return binned - tf.reduce_mean(binned, axis=1, keepdims=True)


def _event_model() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        video_tower=_EventTowers.video_tower,
        audio_tower=_EventTowers.audio_tower,
        objective=ContrastiveSync(normalize=True),
    )


def _description() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        clip_spec=SPEC,
        fps=FPS,
        dataset="",
        ingest={"fps": FPS, "short_side": 32, "sample_rate": 16000},
    )


def test_estimate_finds_a_known_shift_with_the_right_sign(world_video, tmp_path):
    model, description = _event_model(), _description()
    for truth in (0.5, -0.25):
        shifted = tmp_path / f"shift_{truth}.mp4"
        offset.write_shifted(world_video, shifted, truth)
        estimate = offset.estimate_offset(
            model, description, shifted, max_offset_s=1.0, num_clips=12
        )
        assert abs(estimate.offset_s - truth) <= 1 / FPS, (truth, estimate.offset_s)
        np.testing.assert_allclose(estimate.offsets_s, np.arange(-50, 51) * 0.02, atol=1e-9)
        assert estimate.costs.shape == (101,) and estimate.clips == 12
        best = int(np.argmin(estimate.costs))
        assert abs(estimate.offset_s - estimate.offsets_s[best]) <= 0.01  # refined in a step
    with pytest.raises(
        UserError,
        match=r"too short to try offsets of ±3 s \(needs 7.00 "
        r"s of video and audio\); lower --max_offset_s",
    ):
        offset.estimate_offset(model, description, world_video, max_offset_s=3.0)


def test_a_long_file_is_read_only_around_its_clips(world_video, tmp_path, monkeypatch):
    import avts_tf.portable

    model, description = _event_model(), _description()
    shifted = tmp_path / "shift.mp4"
    offset.write_shifted(world_video, shifted, 0.5)
    cuts = []
    whole = avts_tf.portable.media_record

    def media_record(path, description, start=None, end=None):
        cuts.append((start, end))
        return whole(path, description, start=start, end=end)

    monkeypatch.setattr(avts_tf.portable, "media_record", media_record)
    monkeypatch.setattr(offset, "WHOLE_FILE_MAX_S", 2.0)  # the 6 s video counts as long
    estimate = offset.estimate_offset(model, description, shifted, max_offset_s=1.0, num_clips=5)
    assert abs(estimate.offset_s - 0.5) <= 1 / FPS, estimate.offset_s
    span = 1.0 + 2 * 1.0 + 2 / FPS  # window (8 frames at 8 fps), both reaches, 2 frames
    duration = probe_duration(shifted)  # about 6 s, as the container declares it
    np.testing.assert_allclose(
        cuts, [(s, s + span) for s in np.linspace(0, duration - span, 5)], atol=1e-9
    )
    assert estimate.clips == 5


def test_av_offset_tool_errors_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "tools/av_offset.py", "--checkpoint", str(tmp_path), "missing.mp4"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: no such file: missing.mp4; give existing media files"
    )


def test_av_offset_tool_measures_every_file_it_can_and_names_the_others(
    tmp_path, tiny_run, tiny_prepared
):
    from eval_helpers import run_in_process

    good = sorted((tiny_prepared.parent / "videos").rglob("*.mp4"))[0]
    silent = tmp_path / "silent.mp4"
    with av.open(str(good)) as source, av.open(str(silent), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height = 32, 32
        for frame in source.decode(video=0):
            out.mux(stream.encode(frame.reformat(32, 32, "yuv420p")))
        out.mux(stream.encode())
    code, out, err = run_in_process(
        "av_offset", "--checkpoint", str(tiny_run), "--max_offset_s", "0.25", str(good), str(silent)
    )
    assert code == 1 and "Traceback" not in err
    rows = [line.split() for line in out.strip().splitlines()[2:]]
    assert [row[0] for row in rows] == [str(good), str(silent)]
    assert re.fullmatch(r"[+-]0\.\d{3}", rows[0][1]) and rows[0][3] == "16"
    assert rows[1][1:] == ["failed", "-", "0"]
    assert err.strip().splitlines()[-1] == (
        f"error: {silent}: no audio stream; the towers need its video and audio: "
        "give a file with both"
    )
    folder = tmp_path / "footage"  # A folder stands for the media files under it.
    (folder / "b").mkdir(parents=True)
    (folder / "a.mp4").symlink_to(good)
    (folder / "b" / "silent.mp4").symlink_to(silent)
    (folder / "notes.txt").write_text("not media\n")
    code, out, err = run_in_process(
        "av_offset", "--checkpoint", str(tiny_run), "--max_offset_s", "0.25", str(folder)
    )
    assert code == 1
    assert [line.split()[0] for line in out.strip().splitlines()[2:]] == [
        str(folder / "a.mp4"),
        str(folder / "b" / "silent.mp4"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_in_process("av_offset", "--checkpoint", str(tiny_run), str(empty))
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"error: no media file under {empty}; give media files or folders holding them"
    )
