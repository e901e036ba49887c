"""Downstream comparison on the synthetic world: pretrained towers vs random init vs MFCC.

``avts-downstream`` (or ``python tools/downstream_results.py`` from a checkout):

    python tools/downstream_results.py --model_dir runs/downstream \
        [--methods avts tssl avts_tssl] [--gin_param data.synthetic_dataset.duration_s=12.0] \
        [--fsdd ../shared/data/fsdd/recordings] [--shots 1] [--repeats 3] \
        [--finetune_steps 40] [--head_steps 0,20] [--fusion] [--output_json r.json]

Without ``--methods``, ``--model_dir`` is one pretrained run (AVTS, trained there first
with ``--gin_file``, default ``gin/quickstart.gin``, if it holds no towers). With
``--methods``, each method has its run in ``<model_dir>/<method>`` (``avts``:
``gin/quickstart.gin``, ``tssl``: ``gin/tssl_quickstart.gin``, ``avts_tssl``:
``gin/avts_tssl_quickstart.gin``), trained first where missing, every one with the same
``--gin_param`` bindings (bind the same dataset to compare methods on the same videos).
The labelled set is the first run's dataset (``--data`` to use another); its labels are
never used in pretraining. Rows: audio and video linear probes (linear SVM on frozen
features, ``--shots`` files per class, ``--repeats`` draws; and with every training
file), few-shot fine-tuning of the video tower, directly and after fitting the
classifier on the frozen towers first (``--head_steps``); ``--fusion`` adds audio+video
fine-tuning (the AVTS paper's multisensory row); ``--fsdd`` adds the audio probe on the
Free Spoken Digit Dataset with one fold per held-out speaker.
Columns: MFCC, random init (same architecture, fresh weights), each pretrained run.
"""

import argparse
import contextlib
from pathlib import Path

from avts_tf.evaluation import cli

# Method -> (column name, pretraining recipe).
METHODS = {
    "avts": ("AVTS pretrained", "gin/quickstart.gin"),
    "tssl": ("TSSL pretrained", "gin/tssl_quickstart.gin"),
    "avts_tssl": ("AVTS+TSSL pretrained", "gin/avts_tssl_quickstart.gin"),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", required=True,
                        help="a trained run (or where to train one); with --methods, the "
                             "folder of one run per method")
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                        help="pretraining methods compared, one run each")
    parser.add_argument("--gin_file", action="append", default=None,
                        help="recipe of the single run (default gin/quickstart.gin)")
    parser.add_argument("--gin_param", action="append", default=[],
                        help="extra gin bindings of every pretraining")
    parser.add_argument("--data", default=None,
                        help="labelled prepared dataset (default: the first run's dataset)")
    parser.add_argument("--fsdd", default=None,
                        help="FSDD recordings (or their prepared set): speaker-held-out "
                             "audio probe")
    parser.add_argument("--fsdd_prepared", default=None,
                        help="where FSDD is prepared (kept and re-used; default: temporary)")
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


def runs_of(args) -> dict[str, tuple[Path, list[str]]]:
    """Column name -> (model_dir, pretraining recipe files) of every compared run."""
    root = Path(args.model_dir)
    if not args.methods:
        files = args.gin_file or [METHODS["avts"][1]]
        return {METHODS["avts"][0]: (root, files)}
    return {METHODS[m][0]: (root / m, [METHODS[m][1]]) for m in args.methods}


def pretrain(name: str, model_dir: Path, files: list[str], params: list[str]) -> None:
    """Trains a run into ``model_dir`` with its recipe unless its towers exist."""
    import gin

    from avts_tf import config, train

    if all((model_dir / f"{w}_tower.keras").is_file() for w in ("video", "audio")):
        print(f"{name}: using the run in {model_dir}")
        return
    print(f"{name}: pretraining with {', '.join(files)} into {model_dir}")
    config.parse_gin(files, params)
    try:
        results = train.run(model_dir=model_dir, runtime=train.Runtime(verbose=2))
    finally:
        gin.clear_config()
    print(f"{name}: held-out {results.headline} {results[results.headline]:.3f}")


def _main() -> None:
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
    runs = runs_of(args)
    for name, (model_dir, files) in runs.items():
        pretrain(name, model_dir, files, args.gin_param)
    model_dirs = {name: model_dir for name, (model_dir, _) in runs.items()}
    datasets = {checkpoint.run_dataset(model_dir) for model_dir in model_dirs.values()}
    if len(datasets) > 1:
        print(f"note: the runs were pretrained on different datasets: {sorted(datasets)}")
    data = args.data or checkpoint.run_dataset(next(iter(model_dirs.values())))
    budget = downstream.Budget(
        shots=args.shots, repeats=args.repeats, finetune_steps=args.finetune_steps,
        finetune_batch=args.finetune_batch, learning_rate=args.lr,
        clips_per_video=args.clips_per_video, C=args.C,
    )
    columns = [downstream.MFCC, downstream.SCRATCH, *model_dirs]
    results = {"budget": budget.__dict__, "data": str(data),
               "runs": {name: str(path) for name, path in model_dirs.items()}}
    feature_sets = downstream.audio_feature_sets(model_dirs, data)
    results["audio_probe"] = downstream.probe_results(feature_sets, budget)
    video_sets = downstream.video_feature_sets(model_dirs, data, budget.clips_per_video)
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
    if args.fsdd:
        with contextlib.ExitStack() as stack:
            fsdd = _prepared_fsdd(args, stack, model_dirs)
            speaker_sets = downstream.audio_feature_sets(model_dirs, fsdd)
            results["fsdd_speaker_probe"] = downstream.speaker_probe_results(
                speaker_sets, budget.C)
        speakers = len(results["fsdd_speaker_probe"][downstream.MFCC]["runs"])
        rows.append([f"FSDD audio linear probe, {speakers} held-out speakers"]
                    + [_cell(results["fsdd_speaker_probe"], c) for c in columns])
    finetunes = [] if args.skip_finetune else [(False, h) for h in head_steps]
    if args.fusion and not args.skip_finetune:
        finetunes.append((True, head_steps[-1]))
    for fusion, head in finetunes:
        key = f"finetune_{'audio_video' if fusion else 'video'}_head{head}"
        results[key] = downstream.finetune_results(model_dirs, data, budget, fusion, head)
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


def _prepared_fsdd(args, stack, model_dirs) -> Path:
    """FSDD prepared at the towers' sample rate (``--fsdd`` may already be prepared)."""
    import tempfile

    from avts_tf.evaluation import checkpoint, records_io

    rate = checkpoint.run_clip_spec(next(iter(model_dirs.values()))).log_mel.sample_rate
    work = args.fsdd_prepared or stack.enter_context(
        tempfile.TemporaryDirectory(prefix="avts_fsdd_"))
    return records_io.ensure_prepared(args.fsdd, work, layout="fsdd", sample_rate=rate,
                                      audio_only=True)


def _cell(results: dict, column: str) -> str:
    from avts_tf.evaluation import report

    if column not in results:
        return "-"
    entry = results[column]
    return report.mean_std(entry["mean"], entry["std"] if len(entry["runs"]) > 1 else None)


def main() -> None:
    """Console-script entry point."""
    cli.run_tool(_main)


if __name__ == "__main__":
    main()
