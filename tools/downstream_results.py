"""Downstream comparison on the synthetic world: AVTS-pretrained vs random init vs MFCC.

    python tools/downstream_results.py --model_dir runs/downstream \
        [--gin_file gin/quickstart.gin] [--gin_param train.run.train_steps=200] \
        [--shots 1] [--repeats 3] [--finetune_steps 40] [--head_steps 0,20] [--fusion] \
        [--output_json r.json]

If ``--model_dir`` holds no trained towers, AVTS is first trained there by
``avts_tf.train.run`` with the gin recipe (default ``gin/quickstart.gin``). The labelled
set is the run's own dataset (``--data`` to use another prepared set); its labels are
never used in pretraining. Rows: audio and video linear probes (linear SVM on frozen
features, ``--shots`` files per class, ``--repeats`` draws; and with every training
file), and few-shot fine-tuning of the video tower, directly and after fitting the classifier on
the frozen towers first (``--head_steps``); ``--fusion`` adds audio+video fine-tuning
(the paper's multisensory row).
Columns: MFCC, random init (same architecture, fresh weights), AVTS pretrained.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avts_tf.evaluation import cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", required=True,
                        help="trained AVTS run, or where to train one")
    parser.add_argument("--gin_file", action="append", default=None,
                        help="recipe used when training (default gin/quickstart.gin)")
    parser.add_argument("--gin_param", action="append", default=[], help="extra gin bindings")
    parser.add_argument("--data", default=None,
                        help="labelled prepared dataset (default: the run's dataset)")
    parser.add_argument("--shots", type=int, default=1, help="labelled files per class")
    parser.add_argument("--repeats", type=int, default=3, help="few-shot draws")
    parser.add_argument("--finetune_steps", type=int, default=40,
                        help="fine-tuning steps training every layer")
    parser.add_argument("--head_steps", default="0,20",
                        help="comma list: classifier-only steps on frozen towers before "
                             "fine-tuning (LP-FT); one table row each")
    parser.add_argument("--finetune_batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate")
    parser.add_argument("--clips_per_video", type=int, default=10)
    parser.add_argument("--C", type=float, default=1.0, help="SVM C")
    parser.add_argument("--fusion", action="store_true", help="add audio+video fine-tuning")
    parser.add_argument("--skip_finetune", action="store_true", help="linear probe only")
    parser.add_argument("--output_json", default=None)
    return parser.parse_args(argv)


def pretrain(args) -> None:
    """Trains AVTS into ``--model_dir`` unless its towers exist."""
    import gin

    from avts_tf import config, train

    model_dir = Path(args.model_dir)
    if all((model_dir / f"{w}_tower.keras").is_file() for w in ("video", "audio")):
        print(f"using the AVTS run in {model_dir}")
        return
    files = args.gin_file or [str(Path(__file__).resolve().parents[1] / "gin/quickstart.gin")]
    print(f"pretraining AVTS with {', '.join(files)} into {model_dir}")
    config.parse_gin(files, args.gin_param)
    try:
        results = train.run(model_dir=model_dir, runtime=train.Runtime(verbose=2))
    finally:
        gin.clear_config()
    print(f"pretraining: held-out sync_accuracy {results['sync_accuracy']:.3f}")


def main() -> None:
    args = parse_args()
    cli.quiet_logs()
    from avts_tf.evaluation import checkpoint, downstream, records_io, report
    from avts_tf.evaluation.errors import BadInput

    if args.data and not records_io.is_prepared(args.data):
        raise BadInput(f"--data {args.data} is not a prepared dataset")
    try:
        head_steps = [int(h) for h in cli.split_list(args.head_steps) or ["0"]]
    except ValueError:
        raise BadInput(f"--head_steps must be integers, got {args.head_steps!r}") from None
    pretrain(args)
    data = args.data or checkpoint.run_dataset(args.model_dir)
    budget = downstream.Budget(
        shots=args.shots, repeats=args.repeats, finetune_steps=args.finetune_steps,
        finetune_batch=args.finetune_batch, learning_rate=args.lr,
        clips_per_video=args.clips_per_video, C=args.C,
    )
    columns = [downstream.MFCC, downstream.SCRATCH, downstream.PRETRAINED]
    results = {"budget": budget.__dict__, "data": str(data)}
    feature_sets = downstream.audio_feature_sets(args.model_dir, data)
    results["audio_probe"] = downstream.probe_results(feature_sets, budget)
    video_sets = downstream.video_feature_sets(args.model_dir, data, budget.clips_per_video)
    results["video_probe"] = downstream.probe_results(video_sets, budget)
    train_files = int(sum(feature_sets[downstream.MFCC].splits == budget.train_split))
    rows = []
    for task in ("audio", "video"):
        probe = results[f"{task}_probe"]
        rows += [
            [f"{task} linear probe, {budget.shots} per class ({budget.repeats} draws)"]
            + [_cell(probe["few_shot"], c) for c in columns],
            [f"{task} linear probe, all {train_files} training files"]
            + [_cell(probe["all"], c) for c in columns],
        ]
    runs = [] if args.skip_finetune else [(False, h) for h in head_steps]
    if args.fusion and not args.skip_finetune:
        runs.append((True, head_steps[-1]))
    for fusion, head in runs:
        key = f"finetune_{'audio_video' if fusion else 'video'}_head{head}"
        results[key] = downstream.finetune_results(args.model_dir, data, budget, fusion, head)
        task = "audio+video" if fusion else "video"
        steps = f"{head} head + {budget.finetune_steps} steps" if head else (
            f"{budget.finetune_steps} steps")
        rows.append(
            [f"{task} fine-tuning, {budget.shots} per class, {steps}"]
            + [_cell(results[key], c) for c in columns]
        )
    print()
    print(report.table(["accuracy % (mean ± std)"] + columns, rows))
    if args.output_json:
        report.write_json(args.output_json, results)
        print(f"wrote {args.output_json}")


def _cell(results: dict, column: str) -> str:
    from avts_tf.evaluation import report

    if column not in results:
        return "-"
    entry = results[column]
    return report.mean_std(entry["mean"], entry["std"] if len(entry["runs"]) > 1 else None)


if __name__ == "__main__":
    cli.run_tool(main)
