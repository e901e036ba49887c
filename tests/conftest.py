"""Shared fixtures: gin isolation, tiny towers and a tiny prepared synthetic dataset."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN kernels (off by default on AVX2-only CPUs): ~2x faster convs, as in tools/train.py.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import gin  # noqa: E402
import keras  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def clear_gin():
    """Every test starts and ends with an empty gin config and float32 policy."""
    gin.clear_config()
    yield
    gin.clear_config()
    keras.mixed_precision.set_global_policy("float32")


def tiny_video_tower(input_shape=(4, 32, 32, 3), embedding_dim: int = 8, batch_norm=False):
    """A small functional video tower with a named input.

    ``batch_norm``: False (none), True, or ``"sync"`` (statistics over all replicas).
    """
    inputs = keras.Input(input_shape, name="video")
    x = keras.layers.Conv3D(4, 3, strides=(1, 2, 2), activation="relu")(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization(synchronized=batch_norm == "sync")(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    outputs = keras.layers.Dense(embedding_dim)(x)
    return keras.Model(inputs, outputs, name="tiny_video")


def tiny_audio_tower(input_shape=(24, 16, 1), embedding_dim: int = 8, batch_norm=False):
    """A small functional audio tower with a named input (``batch_norm`` as the video's)."""
    inputs = keras.Input(input_shape, name="audio")
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization(synchronized=batch_norm == "sync")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(embedding_dim)(x)
    return keras.Model(inputs, outputs, name="tiny_audio")


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """Eight 3 s synthetic videos (6 train, 2 test) at 32x32, ingested at 8 fps."""
    from avts_tf.data import ingest, synthetic

    root = tmp_path_factory.mktemp("tiny_synthetic")
    csv_path = synthetic.generate_synthetic_dataset(
        root / "videos", num_videos=8, seed=3, duration_s=3.0, fps=8.0, size=32,
        num_classes=2, test_fraction=0.25,
    )
    out = root / "prepared"
    ingest.prepare_dataset(csv_path, out, fps=8.0, short_side=32, progress=False)
    return out
