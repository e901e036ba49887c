"""Saved towers load with stock Keras alone and ``load_towers`` feeds them like training."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import FPS, SPEC

from avts_tf import portable
from avts_tf.backbones import audio, i3d, video_resnet
from avts_tf.backbones.layers import (
    FusedBatchNormalization,
    UnfusedZeroPadding3D,
    VideoConv3D,
)
from avts_tf.evaluation import checkpoint, features, finetune, records_io

VIDEO = (4, 32, 32, 3)


@pytest.mark.parametrize(
    "build",
    [
        lambda: video_resnet.mc3_18(input_shape=VIDEO, width=4, depths=(1, 1, 1, 1)),
        lambda: video_resnet.r2plus1d_18(input_shape=VIDEO, width=4, depths=(1, 1, 1, 1)),
        lambda: i3d.i3d(input_shape=(8, 32, 32, 3), width=8),
        lambda: audio.avts_audio_vgg(input_shape=(24, 16, 1), width=4, depths=(1, 1, 1, 1)),
    ],
    ids=["mc3_18", "r2plus1d_18", "i3d", "avts_audio_vgg"],
)
def test_portable_tower_has_only_stock_layers_and_the_same_outputs(build):
    keras.utils.set_random_seed(0)
    tower = build()
    x = np.random.default_rng(0).random((2, *tower.input_shape[1:]), np.float32)
    tower(x, training=True)  # moves BatchNorm statistics away from their initial values
    copy = portable.portable_tower(tower)
    kinds = {type(layer) for layer in copy.layers}
    assert not kinds & {VideoConv3D, FusedBatchNormalization}
    assert all(k.__module__.startswith("keras") for k in kinds), kinds
    np.testing.assert_array_equal(copy(x, training=False), tower(x, training=False))
    for a, b in zip(copy.weights, tower.weights, strict=True):
        assert a.path == b.path
        np.testing.assert_array_equal(a, b)


def test_saved_tower_loads_in_safe_mode_without_avts_tf(tmp_path):
    keras.utils.set_random_seed(0)
    tower = video_resnet.mc3_18(input_shape=VIDEO, width=4, depths=(1, 1, 1, 1))
    assert any(isinstance(layer, VideoConv3D) for layer in tower.layers)  # the fast layers
    x = np.random.default_rng(1).random((2, *VIDEO), np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", tower(x, training=False))
    portable.save_tower(tower, tmp_path / "video_tower.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video_tower.keras", "x.npy", "y.npy"]
    script = textwrap.dedent(f"""
        import sys, keras, numpy as np
        model = keras.saving.load_model({str(tmp_path / "video_tower.keras")!r}, safe_mode=True)
        y = model(np.load({str(tmp_path / "x.npy")!r}), training=False)
        np.testing.assert_array_equal(y, np.load({str(tmp_path / "y.npy")!r}))
        assert not [m for m in sys.modules if m.startswith("avts_tf")]
        print("ok")
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_load_towers_turns_a_media_file_into_the_training_inputs(tmp_path, tiny_prepared):
    import tiny

    from avts_tf.data.manifest import Manifest

    keras.utils.set_random_seed(0)
    run = tmp_path / "run"
    run.mkdir()
    portable.save_tower(tiny.tiny_video_tower(), run / "video_tower.keras")
    portable.save_tower(tiny.tiny_audio_tower(), run / "audio_tower.keras")
    tiny.describe_run(run, tiny_prepared)
    loaded = portable.load_towers(run)
    manifest = Manifest.read(tiny_prepared)
    entry = manifest.records("test")[0]
    got = loaded.inputs(entry.path, num_clips=3)
    record = next(
        r
        for r in records_io.parsed_records(tiny_prepared, ["test"])
        if r["id"].numpy().decode() == entry.id
    )
    want = features.video_clips_fn(SPEC, FPS, 3)(record)
    np.testing.assert_array_equal(got["video"], want)
    assert got["video"].shape == (3, *tiny.VIDEO_SHAPE)
    assert got["audio"].shape == (3, *tiny.AUDIO_SHAPE)
    last = entry.num_frames - SPEC.num_frames * SPEC.frame_stride
    np.testing.assert_array_equal(got["start_s"], np.array([0, last // 2, last]) / FPS)
    sample = int(round(got["start_s"][1] * manifest.sample_rate))
    window = features.window_samples(SPEC.log_mel, tiny.AUDIO_SHAPE[0])
    from avts_tf.data.audio_features import log_mel_spectrogram

    expected = log_mel_spectrogram(record["waveform"][sample : sample + window], SPEC.log_mel)
    np.testing.assert_allclose(got["audio"][1], expected, atol=1e-5)
    hop = loaded.inputs(entry.path, hop_s=1.0)
    np.testing.assert_array_equal(hop["start_s"], np.arange(0, last + 1, 8) / FPS)
    embedding = loaded.video(tf.constant(got["video"]), training=False)
    assert embedding.shape == (3, 8)


def test_a_file_without_audio_gets_the_fix_a_tool_user_can_apply(tmp_path):
    import types

    import av

    from avts_tf.errors import UserError

    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 32
        for i in range(8):
            pixels = np.full((32, 32, 3), 30 * i, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        out.mux(stream.encode())
    description = types.SimpleNamespace(fps=8, dataset="", ingest={"fps": 8.0, "short_side": 32})
    with pytest.raises(UserError) as caught:
        portable.media_record(path, description)
    assert str(caught.value) == (
        f"{path}: no audio stream; the towers need its video and audio: give a file with both"
    )


def _layer_kinds(model: keras.Model) -> set[type]:
    kinds = set()
    for layer in model.layers:
        kinds.add(type(layer))
        if isinstance(layer, keras.Model):
            kinds |= _layer_kinds(layer)
    return kinds


def test_a_loaded_tower_is_fine_tuned_with_the_fast_layers_and_saved_with_stock_ones(tmp_path):
    keras.utils.set_random_seed(0)
    tower = video_resnet.mc3_18(input_shape=VIDEO, width=4, depths=(1, 1, 1, 1))
    x = np.random.default_rng(2).random((2, *VIDEO), np.float32)
    tower(x, training=True)  # moves BatchNorm statistics away from their initial values
    portable.save_tower(tower, tmp_path / "video_tower.keras")
    loaded = checkpoint.load_tower(tmp_path / "video_tower.keras", "video")
    assert {VideoConv3D, FusedBatchNormalization, UnfusedZeroPadding3D} <= _layer_kinds(loaded)
    assert keras.layers.Conv3D not in _layer_kinds(loaded)
    np.testing.assert_array_equal(loaded(x, training=False), tower(x, training=False))
    model = finetune.classifier(loaded, 3)
    saved = portable.portable_tower(model)  # What avts-finetune --save writes: inner towers too.
    assert all(k.__module__.startswith("keras") for k in _layer_kinds(saved))
    np.testing.assert_array_equal(saved({"video": x}), model({"video": x}))
