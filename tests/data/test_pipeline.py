"""The tf.data reader: exact alignment of video, audio and negatives; determinism."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tiny

from avts_tf.data import pipeline, records
from avts_tf.data.audio_features import LogMelSpec, log_mel_spectrogram
from avts_tf.samplers import HardNegativeSampler, SuperHardNegativeSampler

SPEC = dataclasses.replace(tiny.SPEC, random_flip=False)
NEGATIVES = {"hard": HardNegativeSampler(), "super_hard": SuperHardNegativeSampler(0.25)}


def parsed_records(data_dir, split):
    out = {}
    for path in pipeline.shard_files(data_dir, split):
        for serialized in tf.data.TFRecordDataset(path):
            record = records.parse(serialized)
            key = int(tf.strings.to_hash_bucket_fast(record["id"], 2**62))
            out[key] = record
    return out


def test_shapes(tiny_prepared):
    batch = next(iter(pipeline.train_dataset(tiny_prepared, 3, spec=SPEC, negatives=NEGATIVES)))
    assert batch["video"].shape == (3, 4, 32, 32, 3)
    assert batch["audio"].shape == (3, *SPEC.audio_shape(8.0)) == (3, 24, 16, 1)
    assert batch["audio_hard"].shape == batch["audio_super_hard"].shape == batch["audio"].shape
    assert batch["video"].dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(batch["video"])) and float(tf.reduce_max(batch["video"])) <= 1


def test_clips_are_exactly_aligned_with_their_source(tiny_prepared):
    source = parsed_records(tiny_prepared, "train")
    window = 8000  # 4 frames at 8 fps = 0.5 s at 16 kHz.
    dataset = pipeline.train_dataset(tiny_prepared, 4, spec=SPEC, negatives=NEGATIVES, seed=5)
    for batch in dataset.take(3):
        for i in range(4):
            record = source[int(batch["video_id"][i])]
            video_start = int(batch["video_start"][i])
            assert video_start % 2000 == 0  # On the frame grid (16000 / 8).
            assert int(batch["audio_start"][i]) == video_start
            frame = tf.io.decode_jpeg(record["frames"][video_start // 2000])
            np.testing.assert_allclose(
                batch["video"][i, 0].numpy(), tf.image.convert_image_dtype(frame, tf.float32),
                atol=1e-6,
            )
            for key, start_key in [
                ("audio", "audio_start"), ("audio_hard", "audio_start_hard"),
                ("audio_super_hard", "audio_start_super_hard"),
            ]:
                start = int(batch[start_key][i])
                expected = log_mel_spectrogram(
                    record["waveform"][start : start + window], SPEC.log_mel
                )
                np.testing.assert_allclose(batch[key][i].numpy(), expected.numpy(), atol=1e-3)
            hard_shift = abs(int(batch["audio_start_hard"][i]) - video_start)
            if bool(batch["valid_hard"][i]):
                assert hard_shift >= window
            super_shift = abs(int(batch["audio_start_super_hard"][i]) - video_start)
            if bool(batch["valid_super_hard"][i]):
                assert 4000 <= super_shift < window


def test_eval_is_deterministic_and_clip_major(tiny_prepared):
    def collect():
        ds = pipeline.eval_dataset(tiny_prepared, 8, spec=SPEC, clips_per_video=3)
        return [(b["video_id"].numpy(), b["video_start"].numpy(), b["audio"].numpy()) for b in ds]

    first, second = collect(), collect()
    for (ids1, starts1, audio1), (ids2, starts2, audio2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(ids1, ids2)
        np.testing.assert_array_equal(starts1, starts2)
        np.testing.assert_array_equal(audio1, audio2)
    ids = np.concatenate([f[0] for f in first])
    assert len(ids) == 2 * 3  # Two test videos, three clips each.
    assert np.all(ids[1:] != ids[:-1])  # The next example is always another video.


def test_shuffle_audio_control_breaks_alignment(tiny_prepared):
    batch = next(iter(pipeline.train_dataset(tiny_prepared, 8, spec=SPEC, shuffle_audio=True)))
    source = parsed_records(tiny_prepared, "train")
    mismatched = 0
    for i in range(8):
        record = source[int(batch["video_id"][i])]
        start = int(batch["audio_start"][i])
        expected = log_mel_spectrogram(record["waveform"][start : start + 8000], SPEC.log_mel)
        mismatched += not np.allclose(batch["audio"][i].numpy(), expected.numpy(), atol=1e-3)
    assert mismatched >= 4


def test_missing_split_names_present_splits(tiny_prepared):
    with pytest.raises(FileNotFoundError, match="splits present: test, train"):
        pipeline.train_dataset(tiny_prepared, 2, spec=SPEC, split="validation")


def test_sample_rate_mismatch_is_explained(tiny_prepared):
    spec = pipeline.ClipSpec(log_mel=LogMelSpec(sample_rate=22050))
    with pytest.raises(ValueError, match="stores audio at 16000 Hz"):
        pipeline.train_dataset(tiny_prepared, 2, spec=spec)
