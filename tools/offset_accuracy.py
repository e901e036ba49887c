"""Accuracy of avts-av-offset on synthetic videos with known audio shifts.

    python tools/offset_accuracy.py --checkpoint runs/offset_quickstart --output_dir /tmp/oa
        [--num_videos 20 --seed 7 --max_shift_s 0.6]

Generates ``--num_videos`` videos of the synthetic world with ``--seed`` (use one other
than training's), shifts each one's audio by a uniform draw in ``[-max_shift_s,
max_shift_s]`` (``avts_tf.evaluation.offset.write_shifted``), estimates every offset and
prints a table, then ``within_one_frame: 0.xx`` (one frame of the run's frame rate).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import flags  # noqa: E402

from avts_tf.cli import app  # noqa: E402

flags.DEFINE_string("checkpoint", None, "A sync run's model_dir.", required=True)
flags.DEFINE_string("output_dir", None, "Where the videos go.", required=True)
flags.DEFINE_integer("num_videos", 20, "Videos.", lower_bound=1)
flags.DEFINE_integer("seed", 7, "Seed of the videos and the shifts.")
flags.DEFINE_float("duration_s", 8.0, "Video length.", lower_bound=1.0)
flags.DEFINE_float("max_shift_s", 0.6, "Largest shift either way.", lower_bound=0.0)
FLAGS = flags.FLAGS


def _main(argv):
    import numpy as np

    from avts_tf.data.ingestion import synthetic
    from avts_tf.evaluation import checkpoint, offset, report, sync

    out = Path(FLAGS.output_dir)
    synthetic.generate_synthetic_dataset(
        out / "videos", num_videos=FLAGS.num_videos, seed=FLAGS.seed,
        duration_s=FLAGS.duration_s, fps=16.0, size=64, num_classes=4, test_fraction=0.0)
    videos = sorted((out / "videos").rglob("*.mp4"))
    truths = np.round(np.random.default_rng(FLAGS.seed).uniform(
        -FLAGS.max_shift_s, FLAGS.max_shift_s, len(videos)), 3)
    model, _ = sync.sync_model(FLAGS.checkpoint, ("easy",))
    description = checkpoint.run_description(FLAGS.checkpoint)
    rows, errors = [], []
    for video, truth in zip(videos, truths, strict=True):
        shifted = out / f"shifted_{video.stem}.mp4"
        offset.write_shifted(video, shifted, float(truth))
        estimate = offset.estimate_offset(model, description, shifted,
                                          max_offset_s=max(1.0, FLAGS.max_shift_s + 0.2))
        errors.append(estimate.offset_s - truth)
        rows.append([video.name, f"{truth:+.3f}", f"{estimate.offset_s:+.3f}",
                     f"{1000 * errors[-1]:+.0f}", f"{estimate.confidence:.1f}"])
    print(report.table(["video", "truth_s", "estimate_s", "error_ms", "confidence"], rows))
    errors = np.abs(np.array(errors))
    print(f"median_error_ms: {1000 * np.median(errors):.0f}")
    print(f"within_one_frame: {np.mean(errors <= 1 / description.fps):.2f}")
    return 0


if __name__ == "__main__":
    app.quiet_tensorflow()
    app.run(_main)
