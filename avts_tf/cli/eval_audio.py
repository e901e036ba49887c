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

import contextlib
from pathlib import Path

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

shared.define_run("Audio tower: a .keras file or a training run's model_dir.", required=False,
                  check=(shared.exists_or_none, shared.TOWER_OR_RUN))
flags.DEFINE_multi_string("features", [], ".npz from avts-extract (repeatable).")
flags.register_validator("features", lambda paths: all(Path(p).is_file() for p in paths),
                         "a features file does not exist; give .npz files from avts-extract")
flags.DEFINE_multi_enum("baseline", [], ["mfcc"], "Add the MFCC + linear SVM baseline.")
flags.DEFINE_enum("protocol", "auto",
                  ["auto", "esc50", "dcase2014", "split", "kfold", "group", "fsdd_speakers"],
                  "Folds: auto, esc50, dcase2014, split, kfold, group or fsdd_speakers.")
shared.define_splits("Training split (protocol split).", "Test split (protocol split).")
flags.DEFINE_integer("num_folds", None, "Folds of kfold (default 5) or group (default: one "
                     "per group).", lower_bound=2)
flags.DEFINE_string("group_regex", None, "Protocol group: regex on file ids, first group = "
                    "group name.")
flags.DEFINE_list("C", ["1.0"], "SVM C; a comma list picks C by 3-fold CV on training files.")
flags.register_validator("C", lambda cs: bool(cs) and all(_positive_number(c) for c in cs),
                         "must be positive numbers separated by commas, e.g. 0.1,1,10")
flags.DEFINE_string("layer", "auto", "Audio tower layer (default: avgpool).")
flags.DEFINE_enum("pool", "avg", ["avg", "max"], "Pooling over time and frequency.")
flags.DEFINE_float("window_s", 1.0, "Window when no tower fixes it (MFCC only, or an "
                   "any-length tower).")
flags.register_validator("window_s", lambda v: v > 0, "must be > 0 seconds")
flags.DEFINE_integer("max_windows", None, "At most this many windows per file.",
                     lower_bound=1)
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


def _feature_sets(args, stack):  # args: FLAGS
    """Yields ``(name, Features)`` for every feature set asked for."""
    from avts_tf.errors import UserError
    from avts_tf.evaluation import checkpoint, features, mfcc, prepared

    for path in args.features:
        if not Path(path).is_file():
            raise UserError(f"features file {path} does not exist; give an .npz written by "
                            "avts-extract")
        feats = features.Features.load(path)
        yield f"{Path(path).name} ({feats.info.get('layer', '?')})", feats
    if not (args.checkpoint or args.baseline):
        return
    if not args.data:
        raise UserError("give --data with --checkpoint or --baseline")
    window = None
    sample_rate = 16000
    if args.checkpoint:
        tower = checkpoint.load_tower(args.checkpoint, "audio")
        features.resolve_layer(tower, args.layer)
        spec = checkpoint.clip_spec_for(args.checkpoint, audio_tower=tower)
        sample_rate = spec.log_mel.sample_rate
    data = prepared.prepared_data(shared.data_source(args.checkpoint), stack,
                                  sample_rate=sample_rate, audio_only=True)
    if args.checkpoint:
        feats = features.tower_features(
            tower, "audio", data, spec, layer=args.layer, pool=args.pool,
            batch_size=args.batch_size, window_s=args.window_s, max_windows=args.max_windows,
            progress=not args.quiet,
        )
        window = int(feats.info["window_samples"])
        yield f"audio tower ({feats.info['layer']})", feats
    if "mfcc" in args.baseline:
        feats = mfcc.mfcc_features(
            data, window, window_s=args.window_s, max_windows=args.max_windows,
            progress=not args.quiet,
        )
        yield f"MFCC baseline ({feats.features.shape[1]}-d)", feats


def _main(argv: list[str]) -> None:
    app.no_positional(argv)
    app.quiet_logs()
    from avts_tf.errors import UserError
    from avts_tf.evaluation import audio_probe, report

    if not (FLAGS.checkpoint or FLAGS.features or FLAGS.baseline):
        raise UserError("nothing to evaluate: give --checkpoint, --features or --baseline mfcc")
    cs = [float(c) for c in FLAGS.C]
    rows, results = [], {}
    with contextlib.ExitStack() as stack:
        for name, feats in _feature_sets(FLAGS, stack):
            folds = audio_probe.make_folds(
                feats, FLAGS.protocol, train_split=FLAGS.train_split,
                test_split=FLAGS.test_split, num_folds=FLAGS.num_folds,
                group_regex=FLAGS.group_regex, seed=FLAGS.seed,
            )
            result = audio_probe.probe(feats, folds, cs)
            result.update(protocol=FLAGS.protocol, info=feats.info, files=len(feats.ids),
                          windows=int(len(feats.features)))
            results[name] = result
            per_fold = " ".join(f"{100 * f['accuracy']:.1f}" for f in result["folds"])
            rows.append([name, len(folds), report.mean_std(result["mean"], result["std"]),
                         per_fold])
    print(report.table(["features", "folds", "accuracy % (mean ± std)", "per fold"], rows))
    if FLAGS.output_json:
        report.write_json(FLAGS.output_json, results)
        print(f"wrote {FLAGS.output_json}")


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
