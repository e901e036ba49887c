"""Synchronization accuracy of a training run on held-out videos, per negative kind.

``avts-eval-sync`` (or ``python tools/eval_sync.py`` from a checkout):

    python tools/eval_sync.py --model_dir runs/quickstart --data PREPARED_OR_MEDIA \
        [--split test] [--kinds easy,hard,super_hard] [--output_json sync.json]

``sync_accuracy`` (easy negatives: audio of another video) is the paper's protocol;
``hard`` (same video, no overlap) and ``super_hard`` (same video, shifted but
overlapping) use the run's sampler settings. The model is rebuilt from the run's towers
and ``run.json`` (task margin and threshold, clip and log-mel settings).
"""

import argparse
import contextlib
from pathlib import Path

from avts_tf.evaluation import cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", required=True, help="a training run's model_dir")
    parser.add_argument("--split", default="test", help="held-out split")
    parser.add_argument("--kinds", default="easy,hard,super_hard",
                        help="negative kinds to score (easy is always scored)")
    parser.add_argument("--clips_per_video", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_json", default=None)
    cli.add_data_flags(parser)
    return parser.parse_args(argv)


def _main() -> None:
    args = parse_args()
    cli.quiet_logs()
    from avts_tf.evaluation import checkpoint, report, sync
    from avts_tf.evaluation.errors import BadInput

    if not Path(args.model_dir).is_dir():
        raise BadInput(f"model_dir {args.model_dir} does not exist")
    kinds = sync.check_kinds(cli.split_list(args.kinds) or ["easy"])
    spec_rate = checkpoint.run_clip_spec(args.model_dir).log_mel.sample_rate
    with contextlib.ExitStack() as stack:
        data = cli.prepared_data(args, stack, sample_rate=spec_rate)
        results = sync.evaluate_sync(
            args.model_dir, data, args.split, kinds, args.clips_per_video, args.batch_size,
            args.seed,
        )
    rows = []
    for kind in kinds:
        key = "sync_accuracy" if kind == "easy" else f"sync_accuracy_{kind}"
        label = "easy (paper protocol)" if kind == "easy" else kind
        pairs = results[f"pairs_{kind}"]
        accuracy = report.mean_std(results[key]) if pairs else "n/a (videos too short)"
        rows.append([label, accuracy, pairs])
    print(report.table(["negatives", "sync accuracy %", "negative pairs"], rows))
    if args.output_json:
        report.write_json(args.output_json, results)
        print(f"wrote {args.output_json}")


def main() -> None:
    """Console-script entry point."""
    cli.run_tool(_main)


if __name__ == "__main__":
    main()
