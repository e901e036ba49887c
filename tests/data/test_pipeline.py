"""The tf.data reader: exact alignment of video, audio and negatives; determinism."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tiny

from avts_tf.data import pipeline, records
from avts_tf.data.audio_features import LogMelSpec, log_mel_spectrogram
from avts_tf.data.clips import ClipSpec
from avts_tf.errors import without_gin_note
from avts_tf.tasks.base import Task
from avts_tf.tasks.sync.objectives import ContrastiveSync
from avts_tf.tasks.sync.samplers import HardNegativeSampler, SuperHardNegativeSampler

SPEC = dataclasses.replace(tiny.SPEC, random_flip=False)
NEGATIVES = {"hard": HardNegativeSampler(), "super_hard": SuperHardNegativeSampler(0.25)}
SYNC = ContrastiveSync(negatives=NEGATIVES)


def parsed_records(data_dir, split):
    out = {}
    for path in pipeline.shard_files(data_dir, split):
        for serialized in tf.data.TFRecordDataset(path):
            record = records.parse(serialized)
            key = int(tf.strings.to_hash_bucket_fast(record["id"], 2**62))
            out[key] = record
    return out


def test_shapes(tiny_prepared):
    batch = next(iter(pipeline.train_dataset(tiny_prepared, 3, task=SYNC, spec=SPEC)))
    assert batch["video"].shape == (3, 4, 32, 32, 3)
    assert batch["audio"].shape == (3, *SPEC.audio_shape(8.0)) == (3, 24, 16, 1)
    assert batch["audio_hard"].shape == batch["audio_super_hard"].shape == batch["audio"].shape
    assert batch["video"].dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(batch["video"])) and float(tf.reduce_max(batch["video"])) <= 1


def test_clips_are_exactly_aligned_with_their_source(tiny_prepared):
    source = parsed_records(tiny_prepared, "train")
    window = 8000  # 4 frames at 8 fps = 0.5 s at 16 kHz.
    dataset = pipeline.train_dataset(tiny_prepared, 4, task=SYNC, spec=SPEC, seed=5)
    for batch in dataset.take(3):
        for i in range(4):
            record = source[int(batch["video_id"][i])]
            video_start = int(batch["video_start"][i])
            assert video_start % 2000 == 0  # On the frame grid (16000 / 8).
            assert int(batch["audio_start"][i]) == video_start
            frame = tf.io.decode_jpeg(record["frames"][video_start // 2000])
            np.testing.assert_allclose(
                batch["video"][i, 0].numpy(),
                tf.image.convert_image_dtype(frame, tf.float32),
                atol=1e-6,
            )
            for key, start_key in [
                ("audio", "audio_start"),
                ("audio_hard", "audio_start_hard"),
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
    batch = next(
        iter(
            pipeline.train_dataset(
                tiny_prepared, 8, task=ContrastiveSync(shuffle_audio=True), spec=SPEC
            )
        )
    )
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


class _CountingTask(Task):
    """Aligned clips; records the stateless seed of every example it decodes."""

    def __init__(self):
        super().__init__()
        self.decoded = []

    def train_example(self, clips, record, seed):
        example = super().train_example(clips, record, seed)
        tf.py_function(lambda s: self.decoded.append(tuple(s.numpy())), [seed], [])
        example["seed"] = seed
        return example


def _worker_batches(data_dir, workers, worker, steps, batch_size=4):
    task = _CountingTask()
    context = tf.distribute.InputContext(
        num_input_pipelines=workers, input_pipeline_id=worker, num_replicas_in_sync=workers
    )
    dataset = pipeline.train_dataset(
        data_dir, batch_size, task=task, spec=SPEC, seed=3, input_context=context
    )
    batches = [{k: v.numpy() for k, v in b.items()} for b in dataset.take(steps)]
    return batches, set(task.decoded)


def test_each_worker_decodes_only_its_share_of_every_step(tiny_prepared):
    shards = len(pipeline.shard_files(tiny_prepared, "train"))
    workers = shards + 1  # fewer shards than workers: workers split the record stream
    batch_size = 2 * workers
    one, _ = _worker_batches(tiny_prepared, 1, 0, 3, batch_size)
    shares = [_worker_batches(tiny_prepared, workers, w, 3, batch_size) for w in range(workers)]
    for w, (batches, decoded) in enumerate(shares):
        assert [len(b["video"]) for b in batches] == [2, 2, 2]
        yielded = {tuple(s) for b in batches for s in b["seed"]}
        assert yielded <= decoded
        for other, (_, decoded_other) in enumerate(shares):
            if other != w:
                assert not decoded & decoded_other  # no clip is decoded by two workers
    for step in range(3):
        # Together the workers' batches of a step are the one-worker batch of that step.
        together = sorted(
            tuple(s) for _, (batches, _) in enumerate(shares) for s in batches[step]["seed"]
        )
        assert together == sorted(tuple(s) for s in one[step]["seed"])


def test_workers_read_disjoint_shards_when_there_are_enough(tiny_prepared):
    shards = pipeline.shard_files(tiny_prepared, "train")
    if len(shards) < 2:
        pytest.skip("needs two train shards")
    ids = []
    for w in range(2):
        batches, _ = _worker_batches(tiny_prepared, 2, w, 4)
        ids.append({int(i) for b in batches for i in b["video_id"]})
    assert ids[0] and ids[1] and not ids[0] & ids[1]


def test_records_are_streamed_not_cached_by_default(tiny_prepared):
    dataset = pipeline.train_dataset(tiny_prepared, 2, spec=SPEC)
    ops = {
        node.op
        for node in tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy()).node
    }
    assert "CacheDatasetV2" not in ops and "CacheDataset" not in ops
    cached = pipeline.train_dataset(tiny_prepared, 2, spec=SPEC, cache_records=True)
    cached_ops = {
        node.op
        for node in tf.compat.v1.GraphDef.FromString(cached._as_serialized_graph().numpy()).node
    }
    assert cached_ops & {"CacheDatasetV2", "CacheDataset"}


def test_skipping_a_corrupted_record_keeps_the_records_before_it_and_logs_the_count(
    tmp_path, caplog
):
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(5):
            writer.write(bytes([i]) * 100)
    raw = bytearray(open(path, "rb").read())
    # Each record: 8-byte length, 4-byte CRC, 100 data bytes, 4-byte CRC; flip record 2's data.
    raw[2 * 116 + 12 + 50] ^= 0xFF
    open(path, "wb").write(bytes(raw))
    shard = pipeline._read_shard_skipping_corrupted(tf.constant(path), tf.constant(5, tf.int64))
    assert [r for r in shard.repeat(2).as_numpy_iterator()] == [b"\0" * 100, b"\1" * 100] * 2
    # Once per pass over the shard:
    assert [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()] == [
        f"skipped 3 of 5 records of corrupted shard {path} (a corrupted record and everything "
        "after it, on every pass over the data); rebuild it with avts-prepare --verify"
    ] * 2


def test_a_whole_shard_logs_nothing_when_skipping_is_on(tmp_path, caplog):
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(3):
            writer.write(bytes([i]))
    shard = pipeline._read_shard_skipping_corrupted(tf.constant(path), tf.constant(3, tf.int64))
    assert list(shard.as_numpy_iterator()) == [b"\0", b"\1", b"\2"]
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # Refused here, not truncated or made a float shape (a fraction), nor left to a Keras
        # shape error (0).
        (
            lambda: ClipSpec(num_frames=8.5),
            "data.ClipSpec.num_frames must be an integer > 0, got 8.5",
        ),
        (lambda: ClipSpec(crop_size=0), "data.ClipSpec.crop_size must be an integer > 0, got 0"),
        (
            lambda: ClipSpec(frame_stride=True),
            "data.ClipSpec.frame_stride must be an integer > 0, got True",
        ),
        (
            lambda: ClipSpec(resize_short_side=-1),
            "data.ClipSpec.resize_short_side must be an integer > 0, got -1",
        ),
        # Refused here, not a ZeroDivisionError when the pipeline is built (hop_s 0) or a
        # traceback in tf.data (mel_bins 0).
        (lambda: LogMelSpec(hop_s=0), "data.LogMelSpec.hop_s must be a number > 0, got 0"),
        (lambda: LogMelSpec(mel_bins=0), "data.LogMelSpec.mel_bins must be an integer > 0, got 0"),
        (
            lambda: LogMelSpec(hop_s=1e-5),
            "data.LogMelSpec.hop_s is 1e-05 s, under one sample at 16000 Hz",
        ),
        (
            lambda: LogMelSpec(upper_hz=9000),
            "data.LogMelSpec.upper_hz must be above lower_hz (20.0) "
            "and at most 8000 Hz (Nyquist), got 9000",
        ),
        (lambda: LogMelSpec(lower_hz=-1), "data.LogMelSpec.lower_hz must be a number >= 0, got -1"),
    ],
)
def test_clip_and_log_mel_settings_are_checked_by_name(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert without_gin_note(err.value) == message
    assert LogMelSpec(upper_hz=8000, lower_hz=0).upper_hz == 8000  # the edges are valid
    assert ClipSpec(resize_short_side=None, frame_stride=2).frame_stride == 2


def test_long_enough_at_a_speed_needs_that_many_clip_windows(tiny_prepared):
    from avts_tf.data.clips import Clips

    record = next(iter(parsed_records(tiny_prepared, "test").values()))
    frames, samples = int(record["num_frames"]), int(record["num_samples"])
    clips = Clips(SPEC, 8.0)  # 4 frames = 0.5 s = 8,000 samples at 1x
    fits = [s for s in range(1, 9) if bool(clips.long_enough(record, s))]
    expected = [s for s in range(1, 9) if frames >= 4 * s and samples >= 8000 * s]
    assert fits == expected == list(range(1, min(frames // 4, samples // 8000) + 1))
    assert bool(clips.long_enough(record)) and not bool(clips.long_enough(record, 8))


def test_video_only_clips_keep_records_without_sound_and_carry_no_audio(tiny_prepared):
    """A video tower alone (fine-tuning without fusion, video features) needs no sound:
    about half of UCF101's classes have none. The aligned reader skipped those records."""
    from avts_tf.data.clips import Clips

    record = next(iter(parsed_records(tiny_prepared, "test").values()))
    silent = {
        **record,
        "waveform": record["waveform"][:0],
        "num_samples": tf.constant(0, record["num_samples"].dtype),
    }
    frames = int(record["num_frames"])
    aligned, video_only = Clips(SPEC, 8.0), Clips(SPEC, 8.0, video_only=True)
    assert not bool(aligned.long_enough(silent)) and bool(video_only.long_enough(silent))
    assert int(video_only.windows(silent).last_frame) == frames - SPEC.num_frames
    seed = tf.constant([1, 2], tf.int32)
    example = video_only.aligned(silent, tf.constant(3, tf.int64), False, seed)
    assert "audio" not in example and "audio_start" not in example
    with_sound = aligned.aligned(record, tf.constant(3, tf.int64), False, seed)
    np.testing.assert_array_equal(example["video"], with_sound["video"])
    assert int(example["video_start"]) == int(with_sound["video_start"]) == 3 * 2000
    batch = next(iter(pipeline.eval_dataset(tiny_prepared, 64, spec=SPEC, video_only=True)))
    assert "audio" not in batch and batch["video"].shape[1:] == (4, 32, 32, 3)
