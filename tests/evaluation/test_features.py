"""Towers from checkpoints, layer features with pooling, audio windows, MFCCs."""

import dataclasses
import functools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import SPEC, tiny_video_tower

from avts_tf.backbones.audio import avts_audio_vgg
from avts_tf.backbones.video_resnet import mc3_18
from avts_tf.data.audio_features import LogMelSpec, log_mel_spectrogram
from avts_tf.data.manifest import Manifest
from avts_tf.errors import UserError
from avts_tf.evaluation import checkpoint, features, mfcc, records_io
from avts_tf.models import AVTSModel
from avts_tf.run_description import RunDescription
from avts_tf.tasks.sync.objectives import ContrastiveSync


def test_load_tower_from_model_dir_and_file(tiny_run):
    video = checkpoint.load_tower(tiny_run, "video")
    assert video.inputs[0].shape[1:] == (4, 32, 32, 3)
    audio = checkpoint.load_tower(tiny_run / "audio_tower.keras", "audio")
    assert audio.inputs[0].shape[1:] == (24, 16, 1)


def test_load_tower_bad_inputs(tiny_run, tmp_path):
    fix = "give a training run's --model_dir or a .keras tower file"
    with pytest.raises(UserError) as err:
        checkpoint.load_tower(tmp_path / "missing", "video")
    assert str(err.value) == f"checkpoint {tmp_path / 'missing'} does not exist; {fix}"
    with pytest.raises(UserError) as err:
        checkpoint.load_tower(tiny_run / "video_tower.keras", "audio")
    assert str(err.value) == (
        f"{tiny_run / 'video_tower.keras'} is a video tower, expected the "
        "audio tower; give the run's audio_tower.keras or its model_dir"
    )
    with pytest.raises(UserError) as err:
        checkpoint.load_tower(tmp_path, "video")
    assert str(err.value) == (
        f"{tmp_path} holds neither video_tower.keras nor a training "
        f"checkpoint: not a training run's model_dir; {fix}"
    )
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="cannot load"):
        checkpoint.load_tower(tmp_path / "broken.keras", "video")


def test_clip_spec_comes_from_run_json(tiny_run):
    audio = checkpoint.load_tower(tiny_run, "audio")
    spec = checkpoint.clip_spec_for(tiny_run / "audio_tower.keras", audio_tower=audio)
    assert spec.num_frames == 4 and spec.log_mel.mel_bins == 16 and spec.log_mel.hop_s == 0.02
    assert spec.audio_shape(8.0) == (24, 16, 1)


def test_towers_rebuilt_from_training_checkpoint(tiny_prepared, tmp_path):
    """A run without saved towers (still training) is read from its newest checkpoint."""
    args = {"width": 4, "depths": (1, 1, 1, 1), "embedding_dim": 8}
    RunDescription.of_run(
        video_factory=functools.partial(mc3_18, **args),
        audio_factory=functools.partial(avts_audio_vgg, **args),
        task=ContrastiveSync(),
        clip_spec=SPEC,
        fps=8.0,
        dataset=tiny_prepared,
        train_split="train",
        eval_split="test",
        eval_batch_size=4,
        eval_clips_per_video=2,
        precision="float32",
        seed=0,
        batch_size=4,
        train_steps=2,
    ).write(tmp_path)
    spec = checkpoint.run_clip_spec(tmp_path)
    keras.utils.set_random_seed(1)
    video = mc3_18(input_shape=spec.video_shape(), **args)
    audio = avts_audio_vgg(input_shape=spec.audio_shape(8.0), **args)
    model = AVTSModel(video, audio, ContrastiveSync())
    # avts_tf.callbacks.StepCheckpoint: an index, newest last (the older file is gone).
    (tmp_path / "checkpoints").mkdir()
    model.save_weights(tmp_path / "checkpoints" / "ckpt-000000002.weights.h5")
    index = {
        "checkpoints": [
            {"file": "ckpt-000000001.weights.h5"},
            {"file": "ckpt-000000002.weights.h5"},
        ]
    }
    (tmp_path / "checkpoints" / "checkpoint.json").write_text(json.dumps(index))
    loaded = checkpoint.load_tower(tmp_path, "audio")
    for a, b in zip(loaded.weights, audio.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_fresh_copy_has_new_weights(tiny_run):
    video = checkpoint.load_tower(tiny_run, "video")
    copy = checkpoint.fresh_copy(video)
    assert copy.count_params() == video.count_params()
    assert not np.allclose(copy.weights[0].numpy(), video.weights[0].numpy())


def test_feature_model_pools_any_layer():
    tower = tiny_video_tower()
    name = tower.layers[1].name  # conv3d, conv3d_1, ... (Keras numbers repeated names)
    x = tf.random.uniform([2, 4, 32, 32, 3])
    conv = features.feature_model(tower, name, "avg")(x)
    raw = keras.Model(tower.inputs, tower.get_layer(name).output)(x)
    np.testing.assert_allclose(conv, tf.reduce_mean(raw, axis=[1, 2, 3]), rtol=1e-5)
    assert features.feature_model(tower, name, "max")(x).shape == (2, 4)
    assert features.feature_model(tower)(x).shape == (2, 8)  # No avgpool: the output.
    with pytest.raises(UserError, match=f"valid layer names: auto, output, video, {name}, .*dense"):
        features.feature_model(tower, "nope")


def test_audio_windows_pad_short_files_and_cut_long_ones():
    spec = SPEC.log_mel
    window = features.window_samples(spec, 24)
    assert spec.num_frames(window) == 24
    windows = features.audio_windows_fn(spec, window)
    short = {"waveform": tf.zeros([100])}
    assert windows(short).shape == (1, 24, 16, 1)
    long = {"waveform": tf.random.uniform([int(2.5 * window)])}
    assert windows(long).shape == (2, 24, 16, 1)
    assert features.audio_windows_fn(spec, window, max_windows=1)(long).shape[0] == 1


def test_extract_audio_and_video_features(tiny_prepared, tiny_run, tmp_path):
    audio = checkpoint.load_tower(tiny_run, "audio")
    spec = checkpoint.clip_spec_for(tiny_run, audio_tower=audio)
    feats = features.tower_features(audio, "audio", tiny_prepared, spec, progress=False)
    assert len(feats.ids) == 8 and feats.features.shape[1] == 8
    assert np.bincount(feats.file_index).tolist() == [6] * 8  # 3 s / 0.5 s windows.
    assert sorted(set(feats.splits.tolist())) == ["test", "train"]
    assert feats.label_names == records_io.label_names(tiny_prepared)
    feats.save(tmp_path / "f.npz")
    again = features.Features.load(tmp_path / "f.npz")
    np.testing.assert_array_equal(again.features, feats.features)
    assert again.info["layer"] == "output" and again.ids.tolist() == feats.ids.tolist()

    video = checkpoint.load_tower(tiny_run, "video")
    vspec = checkpoint.clip_spec_for(tiny_run, video_tower=video)
    vfeats = features.tower_features(
        video,
        "video",
        tiny_prepared,
        vspec,
        splits=["test"],
        num_clips=3,
        layer=video.layers[2].name,
        progress=False,
    )
    assert vfeats.features.shape == (6, 4) and vfeats.file_index.tolist() == [0, 0, 0, 1, 1, 1]


def test_extract_bad_inputs(tiny_prepared, tiny_run, tmp_path):
    audio = checkpoint.load_tower(tiny_run, "audio")
    spec = checkpoint.clip_spec_for(tiny_run, audio_tower=audio)
    with pytest.raises(UserError, match="splits present: test, train"):
        features.tower_features(audio, "audio", tiny_prepared, spec, splits=["val"])
    empty = tmp_path / "empty"
    dataclasses.replace(Manifest.read(tiny_prepared), splits={}, written=()).write(empty)
    with pytest.raises(UserError, match="empty set"):
        features.tower_features(audio, "audio", empty, spec)


def _numpy_mfcc_statistics(log_mel, num=40):
    """The baseline with NumPy: DCT-II of log-mels times sqrt(2 / bands) (TensorFlow's
    ``mfccs_from_log_mel_spectrograms``), HTK deltas over 9 frames, mean and std."""
    x = log_mel[..., 0].astype(np.float64)
    bands = x.shape[-1]
    n = np.arange(bands)
    basis = np.cos(np.pi / bands * (n[:, None] + 0.5) * n[None, :]) * np.sqrt(2.0 / bands)
    mfcc_ = (x @ basis)[..., :num]
    padded = np.concatenate([mfcc_[:1]] * 4 + [mfcc_] + [mfcc_[-1:]] * 4)
    frames = len(mfcc_)
    delta = (
        sum(
            k * (padded[4 + k : 4 + k + frames] - padded[4 - k : 4 - k + frames])
            for k in range(1, 5)
        )
        / 60.0
    )
    return np.concatenate([mfcc_.mean(0), mfcc_.std(0), delta.mean(0), delta.std(0)])


def test_mfcc_baseline_equals_a_numpy_computation(tiny_prepared):
    spec = LogMelSpec()
    chirp = tf.sin(tf.cumsum(tf.linspace(0.01, 0.6, 16000)))
    log_mel = log_mel_spectrogram(chirp, spec).numpy()
    got = mfcc.mfcc_embed_fn()(log_mel[None]).numpy()[0]
    np.testing.assert_allclose(got, _numpy_mfcc_statistics(log_mel), rtol=1e-4, atol=1e-4)
    assert got.shape == (160,)
    # One vector per file: the statistics over all its frames.
    feats = mfcc.mfcc_features(tiny_prepared, progress=False)
    assert feats.features.shape == (8, 160) and feats.info["window_samples"] == "file"
    record = next(iter(records_io.parsed_records(tiny_prepared, ["test"])))
    index = list(feats.ids).index(record["id"].numpy().decode())
    whole = log_mel_spectrogram(record["waveform"], spec).numpy()
    np.testing.assert_allclose(
        feats.features[index], _numpy_mfcc_statistics(whole), rtol=1e-4, atol=1e-4
    )
    per_window = mfcc.mfcc_features(tiny_prepared, 8000, progress=False)
    assert per_window.features.shape == (48, 160)
    assert per_window.info["window_samples"] == "8000"
