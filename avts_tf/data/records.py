"""The on-disk record format: one ``tf.train.SequenceExample`` per media file (or piece).

Context features:
    id (bytes): stable identifier of the source file (path relative to the input root).
    label (bytes): class name, ``b""`` when unlabelled.
    label_index (int64): index of ``label`` in the dataset's label list, ``-1`` when unlabelled.
    split (bytes): ``b"train"``, ``b"test"`` or any split name from the input list.
    fps (float): frame rate the frames were resampled to (``0`` for audio-only records).
    num_frames (int64): number of stored frames.
    height, width (int64): size of the stored frames.
    sample_rate (int64): audio rate in Hz (``0`` for video-only records).
    num_samples (int64): number of stored mono audio samples.
    audio (bytes): mono 16-bit little-endian PCM.
    duration (float): seconds covered by the record (``max`` of video and audio length).
    source_id, offset_frames, offset_samples: only on the pieces of a file longer than
        ``IngestConfig.max_record_s`` (``ingestion.segments``): the file's id, shared by
        its pieces (whose own ``id`` is ``<file id>@<piece>``), and where the piece's
        first frame and sample lie in the file.

Feature lists:
    frames (bytes): one JPEG per frame, frame ``i`` shown at ``i / fps`` seconds.

The reader (``avts_tf.data.pipeline``) decodes only the JPEGs a clip needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

CONTEXT_FEATURES = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "label_index": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "split": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "fps": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    "num_frames": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "sample_rate": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "num_samples": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "audio": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "duration": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    # Set on the pieces of a long file (``ingestion.segments``); absent otherwise.
    "source_id": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "offset_frames": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "offset_samples": tf.io.FixedLenFeature([], tf.int64, default_value=0),
}
SEQUENCE_FEATURES = {"frames": tf.io.FixedLenSequenceFeature([], tf.string)}


@dataclass
class MediaRecord:
    """A decoded media file, ready to serialize.

    Attributes:
        id: Stable identifier of the source.
        jpeg_frames: JPEG bytes per frame at ``fps``.
        fps: Frame rate of ``jpeg_frames``.
        height: Frame height in pixels.
        width: Frame width in pixels.
        audio: Mono int16 PCM samples at ``sample_rate`` (empty when there is no audio).
        sample_rate: Audio rate in Hz.
        label: Class name or ``""``.
        label_index: Index of ``label`` or ``-1``.
        split: Split name.
        source_id: For a piece of a longer file (``ingestion.segments``): the file's id,
            shared by its pieces; ``""`` for a record holding a whole file.
        offset_frames: For a piece: index of its first frame among the file's frames.
        offset_samples: For a piece: index of its first sample in the file's audio.
    """

    id: str
    jpeg_frames: list[bytes] = field(default_factory=list)
    fps: float = 0.0
    height: int = 0
    width: int = 0
    audio: np.ndarray = field(default_factory=lambda: np.zeros([0], np.int16))
    sample_rate: int = 0
    label: str = ""
    label_index: int = -1
    split: str = ""
    source_id: str = ""
    offset_frames: int = 0
    offset_samples: int = 0

    @property
    def duration(self) -> float:
        """Seconds covered by the longer of the two streams."""
        video_s = len(self.jpeg_frames) / self.fps if self.fps else 0.0
        audio_s = len(self.audio) / self.sample_rate if self.sample_rate else 0.0
        return max(video_s, audio_s)


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _float(value: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def encode(record: MediaRecord) -> bytes:
    """Serializes ``record`` as a ``tf.train.SequenceExample``."""
    audio = np.asarray(record.audio, dtype="<i2")
    context = tf.train.Features(
        feature={
            "id": _bytes(record.id.encode("utf-8")),
            "label": _bytes(record.label.encode("utf-8")),
            "label_index": _int(record.label_index),
            "split": _bytes(record.split.encode("utf-8")),
            "fps": _float(record.fps),
            "num_frames": _int(len(record.jpeg_frames)),
            "height": _int(record.height),
            "width": _int(record.width),
            "sample_rate": _int(record.sample_rate),
            "num_samples": _int(audio.shape[0]),
            "audio": _bytes(audio.tobytes()),
            "duration": _float(record.duration),
        }
    )
    if record.source_id:  # a piece of a long file; whole-file records keep their bytes
        context.feature["source_id"].CopyFrom(_bytes(record.source_id.encode("utf-8")))
        context.feature["offset_frames"].CopyFrom(_int(record.offset_frames))
        context.feature["offset_samples"].CopyFrom(_int(record.offset_samples))
    frames = tf.train.FeatureList(feature=[_bytes(f) for f in record.jpeg_frames])
    example = tf.train.SequenceExample(
        context=context, feature_lists=tf.train.FeatureLists(feature_list={"frames": frames})
    )
    # Deterministic map order, so identical inputs give identical shard bytes.
    return example.SerializeToString(deterministic=True)


def source_name(record: dict[str, tf.Tensor]) -> tf.Tensor:
    """The string id of the file a parsed record comes from (shared by a file's pieces)."""
    source = record["id"]
    if "source_id" in record:  # records parsed by ``parse``; hand-made ones may lack it
        source = tf.where(tf.strings.length(record["source_id"]) > 0, record["source_id"], source)
    return source


def video_id(record: dict[str, tf.Tensor]) -> tf.Tensor:
    """The int64 id of the video a parsed record comes from (shared by a file's pieces)."""
    return tf.strings.to_hash_bucket_fast(source_name(record), 2**62)


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialized record into tensors (graph-friendly, for ``tf.data``).

    Returns:
        The context features plus ``frames`` (a ``[num_frames]`` string tensor of JPEGs)
        and ``waveform`` (``[num_samples]`` float32 in ``[-1, 1]``).
    """
    context, sequences = tf.io.parse_single_sequence_example(
        serialized, context_features=CONTEXT_FEATURES, sequence_features=SEQUENCE_FEATURES
    )
    out = dict(context)
    out["frames"] = sequences["frames"]
    pcm = tf.io.decode_raw(context["audio"], tf.int16, little_endian=True)
    out["waveform"] = tf.cast(pcm, tf.float32) / 32768.0
    del out["audio"]
    return out
