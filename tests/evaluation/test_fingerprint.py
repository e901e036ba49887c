"""Fingerprinting: the distortions do what they say, identification scores by hand."""

from __future__ import annotations

import numpy as np
import pytest

from avts_tf.data.ingestion import synthetic
from avts_tf.evaluation import fingerprint, media_edit
from avts_tf.evaluation.errors import BadInput


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("fingerprint_world")
    synthetic.generate_synthetic_dataset(root, num_videos=1, seed=5, duration_s=3.0, fps=16.0,
                                         size=32, num_classes=1, test_fraction=0.0)
    (video,) = root.rglob("*.mp4")
    return video


def test_identification_by_hand():
    database = np.eye(3)
    queries = np.array([[0.9, 0.1, 0.0], [0.6, 0.5, 0.0], [0.1, 0.2, 0.3]])
    # Ranks of the truths (0, 1, 2): 1, 2 (0.6 beats 0.5), 1.
    got = fingerprint.identification(queries, database, np.array([0, 1, 2]))
    assert got == {"top1": pytest.approx(2 / 3), "mAP": pytest.approx((1 + 0.5 + 1) / 3)}


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
    snr = 10 * np.log10(np.mean(original.audio[:n] ** 2) / np.mean(noise ** 2))
    assert snr == pytest.approx(10.0, abs=1.5)
    reencoded = tmp_path / "plain.mp4"
    media_edit.write(reencoded, original)
    assert (tmp_path / "low_bitrate.mp4").stat().st_size < reencoded.stat().st_size
    with pytest.raises(BadInput, match="unknown distortion 'blur'; valid: low_bitrate, "):
        fingerprint.distort(source, tmp_path / "x.mp4", "blur")
