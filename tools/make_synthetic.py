"""Generates the built-in synthetic audio-visual dataset (real .mp4 files).

Example:
    python tools/make_synthetic.py --output /tmp/synth --num_videos 64 --seed 0
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import app, flags  # noqa: E402

from avts_tf.data.ingestion.synthetic import generate_synthetic_dataset  # noqa: E402

OUTPUT = flags.DEFINE_string("output", None, "Output folder.", required=True)
NUM_VIDEOS = flags.DEFINE_integer("num_videos", 64, "Number of videos.")
SEED = flags.DEFINE_integer("seed", 0, "Base random seed.")
DURATION = flags.DEFINE_float("duration_s", 4.0, "Duration of each video in seconds.")
FPS = flags.DEFINE_float("fps", 16.0, "Frame rate.")
SIZE = flags.DEFINE_integer("size", 64, "Frame height and width in pixels (even).")
SAMPLE_RATE = flags.DEFINE_integer("sample_rate", 16000, "Audio sample rate in Hz.")
NUM_CLASSES = flags.DEFINE_integer("num_classes", 4, "Number of classes.")
TEST_FRACTION = flags.DEFINE_float("test_fraction", 0.25, "Fraction of videos in split 'test'.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    csv_path = generate_synthetic_dataset(
        OUTPUT.value,
        num_videos=NUM_VIDEOS.value,
        seed=SEED.value,
        duration_s=DURATION.value,
        fps=FPS.value,
        size=SIZE.value,
        sample_rate=SAMPLE_RATE.value,
        num_classes=NUM_CLASSES.value,
        test_fraction=TEST_FRACTION.value,
    )
    print(csv_path)


if __name__ == "__main__":
    app.run(main)
