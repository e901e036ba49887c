"""Generates the built-in synthetic audio-visual dataset (real .mp4 files).

    avts-make-synthetic --output=/tmp/synth --num_videos=64 --seed=0

(``python tools/make_synthetic.py`` takes the same flags, from a checkout.)

Each video is rendered and encoded in chunks of frames and audio, so memory does not
grow with ``--duration_s`` (about 150 MB at 128 px, for 1 minute or 20).
"""

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

shared.define_output("Output folder.", required=True)
NUM_VIDEOS = flags.DEFINE_integer("num_videos", 64, "Number of videos.", lower_bound=1)
SEED = flags.DEFINE_integer("seed", 0, "Base random seed.")
DURATION = flags.DEFINE_float(
    "duration_s", 4.0, "Duration of each video in seconds.", lower_bound=0.1
)
FPS = flags.DEFINE_float("fps", 16.0, "Frame rate.", lower_bound=1.0)
SIZE = flags.DEFINE_integer("size", 64, "Frame height and width in pixels (even).", lower_bound=8)
flags.register_validator(
    "size",
    lambda v: v is None or v % 2 == 0,
    "must be even (frames are encoded as yuv420p), e.g. --size=64",
)
SAMPLE_RATE = flags.DEFINE_integer(
    "sample_rate", 16000, "Audio sample rate in Hz.", lower_bound=8000
)
NUM_CLASSES = flags.DEFINE_integer("num_classes", 4, "Number of classes.", lower_bound=1)
TEST_FRACTION = flags.DEFINE_float(
    "test_fraction", 0.25, "Fraction of videos in split 'test'.", lower_bound=0.0, upper_bound=1.0
)


def _main(argv):
    app.no_positional(argv)
    from avts_tf.data.ingestion.synthetic import generate_synthetic_dataset

    csv_path = generate_synthetic_dataset(
        flags.FLAGS.output,
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


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
