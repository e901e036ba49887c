"""Accuracy of avts-av-offset on synthetic videos with known audio shifts.

    python benchmarks/offset_accuracy.py --checkpoint runs/offset_quickstart --output_dir /tmp/oa
        [--num_videos 20 --seed 7 --max_shift_s 0.6]

Generates ``--num_videos`` videos of the synthetic world with ``--seed`` (use one other
than training's), shifts each one's audio by a uniform draw in ``[-max_shift_s,
max_shift_s]`` (``avts_tf.evaluation.offset.write_shifted``), estimates every offset and
prints a table, then ``within_one_frame: 0.xx`` (one frame of the run's frame rate).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="A sync run's model_dir.")
    parser.add_argument("--output_dir", required=True, help="Where the videos go.")
    parser.add_argument("--num_videos", type=int, default=20, help="Videos.")
    parser.add_argument("--seed", type=int, default=7, help="Seed of the videos and the shifts.")
    parser.add_argument("--duration_s", type=float, default=8.0, help="Video length.")
    parser.add_argument("--max_shift_s", type=float, default=0.6, help="Largest shift either way.")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from avts_tf.data.ingestion import synthetic
    from avts_tf.evaluation import checkpoint, offset, report, sync

    out = Path(args.output_dir)
    synthetic.generate_synthetic_dataset(
        out / "videos",
        num_videos=args.num_videos,
        seed=args.seed,
        duration_s=args.duration_s,
        fps=16.0,
        size=64,
        num_classes=4,
        test_fraction=0.0,
    )
    videos = sorted((out / "videos").rglob("*.mp4"))
    truths = np.round(
        np.random.default_rng(args.seed).uniform(-args.max_shift_s, args.max_shift_s, len(videos)),
        3,
    )
    model, _ = sync.sync_model(args.checkpoint, ("easy",))
    description = checkpoint.run_description(args.checkpoint)
    rows, errors = [], []
    for video, truth in zip(videos, truths, strict=True):
        shifted = out / f"shifted_{video.stem}.mp4"
        offset.write_shifted(video, shifted, float(truth))
        estimate = offset.estimate_offset(
            model, description, shifted, max_offset_s=max(1.0, args.max_shift_s + 0.2)
        )
        errors.append(estimate.offset_s - truth)
        rows.append(
            [
                video.name,
                f"{truth:+.3f}",
                f"{estimate.offset_s:+.3f}",
                f"{1000 * errors[-1]:+.0f}",
                f"{estimate.confidence:.1f}",
            ]
        )
    print(report.table(["video", "truth_s", "estimate_s", "error_ms", "confidence"], rows))
    errors = np.abs(np.array(errors))
    print(f"median_error_ms: {1000 * np.median(errors):.0f}")
    print(f"within_one_frame: {np.mean(errors <= 1 / description.fps):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
