r"""Linear SVM on frozen audio features (and an MFCC baseline), per-file accuracy over folds.

    avts-eval-audio --checkpoint=runs/quickstart --data=ESC50_OR_PREPARED \
        [--baseline=mfcc] [--protocol=auto|esc50|dcase2014|split|kfold|group|fsdd_speakers] \
        [--output_json=results.json]
    avts-eval-audio --baseline=mfcc --data=/path/fsdd/recordings --layout=fsdd \
        --protocol=fsdd_speakers

(``python tools/eval_audio.py`` takes the same flags, from a checkout.)

Each file's audio is cut into windows of the audio tower's input length; a linear SVM
(``StandardScaler`` + ``LinearSVC``) is trained on the windows of the training files and
a test file's class is the argmax of its windows' averaged decision scores.
``--baseline mfcc`` scores MFCC mean+std features on the same windows and folds.
``--features`` evaluates an ``.npz`` from ``avts-extract`` instead.
Prints one row per feature set (mean ± std of accuracy over folds).
"""

from pathlib import Path

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

shared.define_run(
    "Audio tower: a .keras file or a training run's model_dir.",
    required=False,
    check=(shared.exists_or_none, shared.TOWER_OR_RUN),
)
flags.DEFINE_multi_string("features", [], ".npz from avts-extract (repeatable).")
flags.register_validator(
    "features",
    lambda paths: all(Path(p).is_file() for p in paths),
    "a features file does not exist; give .npz files from avts-extract",
)
flags.DEFINE_multi_enum("baseline", [], ["mfcc"], "Add the MFCC + linear SVM baseline.")
flags.DEFINE_enum(
    "protocol",
    "auto",
    ["auto", "esc50", "dcase2014", "split", "kfold", "group", "fsdd_speakers"],
    "Folds: auto, esc50, dcase2014, split, kfold, group or fsdd_speakers.",
)
shared.define_splits("Training split (protocol split).", "Test split (protocol split).")
flags.DEFINE_integer(
    "num_folds",
    None,
    "Folds of kfold (default 5) or group (default: one per group).",
    lower_bound=2,
)
flags.DEFINE_string(
    "group_regex", None, "Protocol group: regex on file ids, first group = group name."
)
flags.DEFINE_list("C", ["1.0"], "SVM C; a comma list picks C by 3-fold CV on training files.")
flags.register_validator(
    "C",
    lambda cs: bool(cs) and all(_positive_number(c) for c in cs),
    "must be positive numbers separated by commas, e.g. 0.1,1,10",
)
flags.DEFINE_string("layer", "auto", "Audio tower layer (default: avgpool).")
flags.DEFINE_enum("pool", "avg", ["avg", "max"], "Pooling over time and frequency.")
flags.DEFINE_float(
    "window_s", 1.0, "Window when no tower fixes it (MFCC only, or an any-length tower)."
)
flags.register_validator("window_s", lambda v: v > 0, "must be > 0 seconds")
flags.DEFINE_integer("max_windows", None, "At most this many windows per file.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Windows per forward pass.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Random seed of the folds.")
shared.define_output_json()
shared.define_quiet()
shared.define_data_flags(required=False)
FLAGS = flags.FLAGS


def _positive_number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def _main(argv: list[str]) -> None:
    app.no_positional(argv)
    app.quiet_logs()
    from avts_tf.errors import UserError
    from avts_tf.evaluation import audio_probe, report

    if not (FLAGS.checkpoint or FLAGS.features or FLAGS.baseline):
        raise UserError("nothing to evaluate: give --checkpoint, --features or --baseline mfcc")
    asked = audio_probe.FeatureRequest(
        feature_files=FLAGS.features,
        checkpoint=FLAGS.checkpoint,
        mfcc="mfcc" in FLAGS.baseline,
        source=shared.data_source(FLAGS.checkpoint) if FLAGS.data else None,
        layer=FLAGS.layer,
        pool=FLAGS.pool,
        window_s=FLAGS.window_s,
        max_windows=FLAGS.max_windows,
        batch_size=FLAGS.batch_size,
        progress=not FLAGS.quiet,
    )
    results = audio_probe.evaluate(
        asked,
        FLAGS.protocol,
        [float(c) for c in FLAGS.C],
        train_split=FLAGS.train_split,
        test_split=FLAGS.test_split,
        num_folds=FLAGS.num_folds,
        group_regex=FLAGS.group_regex,
        seed=FLAGS.seed,
    )
    rows = [
        [
            name,
            len(result["folds"]),
            report.mean_std(result["mean"], result["std"]),
            " ".join(f"{100 * f['accuracy']:.1f}" for f in result["folds"]),
        ]
        for name, result in results.items()
    ]
    print(report.table(["features", "folds", "accuracy % (mean ± std)", "per fold"], rows))
    if FLAGS.output_json:
        report.write_json(FLAGS.output_json, results)
        print(f"wrote {FLAGS.output_json}")


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
