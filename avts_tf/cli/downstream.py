r"""Downstream comparison on the synthetic world: pretrained towers vs random init vs MFCC.

    avts-downstream --model_dir=runs/downstream \
        [--methods=avts,tssl,avts_tssl] [--gin_param=data.synthetic_dataset.duration_s=12.0] \
        [--fsdd=../shared/data/fsdd/recordings] [--shots=1] [--repeats=3] \
        [--finetune_steps=40] [--head_steps=0,20] [--fusion] [--output_json=r.json]

(``python tools/downstream.py`` takes the same flags, from a checkout.)

Without ``--methods``, ``--model_dir`` is one pretrained run (AVTS, trained there first
with ``--gin_file``, default the built-in ``quickstart`` recipe, if it holds no towers).
With ``--methods``, each method has its run in ``<model_dir>/<method>`` (``avts``:
``quickstart``, ``tssl``: ``tssl_quickstart``, ``avts_tssl``: ``avts_tssl_quickstart``,
built-in recipes), trained first where missing, every one with the same
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

import contextlib
from pathlib import Path

from absl import flags

from avts_tf.cli import app
from avts_tf.evaluation import cli

# Method -> (column name, pretraining recipe).
METHODS = {
    "avts": ("AVTS pretrained", "quickstart"),
    "tssl": ("TSSL pretrained", "tssl_quickstart"),
    "avts_tssl": ("AVTS+TSSL pretrained", "avts_tssl_quickstart"),
}

flags.DEFINE_string("model_dir", None, "A trained run (or where to train one); with "
                    "--methods, the folder of one run per method.", required=True)
flags.DEFINE_list("methods", None, f"Pretraining methods compared, one run each "
                  f"(comma list of {', '.join(METHODS)}).")
flags.register_validator("methods", lambda v: set(v or []) <= set(METHODS),
                         f"unknown method; choose among {', '.join(METHODS)}")
flags.DEFINE_multi_string("gin_file", None, "Recipe of the single run (default quickstart).")
flags.DEFINE_multi_string("gin_param", [], "Extra gin bindings of every pretraining.")
flags.DEFINE_string("data", None, "Labelled prepared dataset (default: the first run's "
                    "dataset).")
flags.register_validator("data", cli.exists_or_none, "does not exist; give a prepared "
                         "dataset folder (avts-prepare)")
flags.DEFINE_string("fsdd", None, "FSDD recordings (or their prepared set): speaker-held-out "
                    "audio probe.")
flags.register_validator("fsdd", cli.exists_or_none, "does not exist; give the FSDD "
                         "recordings folder")
flags.DEFINE_string("fsdd_prepared", None, "Where FSDD is prepared (kept and re-used; "
                    "default: temporary).")
flags.DEFINE_integer("shots", 1, "Labelled files per class.", lower_bound=1)
flags.DEFINE_integer("repeats", 3, "Few-shot draws.", lower_bound=1)
flags.DEFINE_integer("finetune_steps", 40, "Fine-tuning steps training every layer.",
                     lower_bound=1)
flags.DEFINE_list("head_steps", ["0", "20"], "Comma list: classifier-only steps on frozen "
                  "towers before fine-tuning (LP-FT); one table row each.")
flags.register_validator("head_steps", cli.integer_list,
                         "must be integers >= 0 separated by commas, e.g. 0,20")
flags.DEFINE_integer("finetune_batch", 8, "Fine-tuning batch size.", lower_bound=1)
flags.DEFINE_float("lr", 1e-3, "Fine-tuning learning rate.")
flags.register_validator("lr", lambda v: v > 0, "must be > 0")
flags.DEFINE_integer("clips_per_video", 10, "Clips per video.", lower_bound=1)
flags.DEFINE_float("C", 1.0, "SVM C.")
flags.register_validator("C", lambda v: v > 0, "must be > 0")
flags.DEFINE_bool("fusion", False, "Add audio+video fine-tuning.")
flags.DEFINE_bool("skip_finetune", False, "Linear probe only.")
flags.DEFINE_string("output_json", None, "Also write the results to this JSON file.")
FLAGS = flags.FLAGS


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


def _main(argv: list[str]) -> None:
    app.no_positional(argv)
    cli.quiet_logs()
    args = FLAGS
    from avts_tf.errors import UserError
    from avts_tf.evaluation import checkpoint, downstream, records_io, report

    if args.data and not records_io.is_prepared(args.data):
        raise UserError(f"--data {args.data} is not a prepared dataset; prepare it with "
                        "avts-prepare")
    head_steps = [int(h) for h in cli.split_list(args.head_steps) or ["0"]]
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


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
