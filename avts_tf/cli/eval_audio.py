"""Linear SVM on frozen audio features (and an MFCC baseline), per-file accuracy over folds.

``avts-eval-audio`` (or ``python tools/eval_audio.py`` from a checkout):

    python tools/eval_audio.py --checkpoint runs/quickstart --data ESC50_OR_PREPARED \
        [--baseline mfcc] [--protocol auto|esc50|dcase2014|split|kfold|group|fsdd_speakers] \
        [--output_json results.json]
    python tools/eval_audio.py --baseline mfcc --data /path/fsdd/recordings --layout fsdd \
        --protocol fsdd_speakers

Each file's audio is cut into windows of the audio tower's input length; a linear SVM
(``StandardScaler`` + ``LinearSVC``) is trained on the windows of the training files and
a test file's class is the argmax of its windows' averaged decision scores.
``--baseline mfcc`` scores MFCC mean+std features on the same windows and folds.
``--features`` evaluates an ``.npz`` from ``tools/extract_features.py`` instead.
Prints one row per feature set (mean ± std of accuracy over folds).
"""

import argparse
import contextlib
from pathlib import Path

from avts_tf.evaluation import cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="audio tower: .keras file or model_dir")
    parser.add_argument("--features", action="append", default=[],
                        help=".npz from extract_features.py (repeatable)")
    parser.add_argument("--baseline", choices=("mfcc",), action="append", default=[],
                        help="add the MFCC + linear SVM baseline")
    parser.add_argument("--protocol", default="auto",
                        help="auto, esc50, dcase2014, split, kfold, group or fsdd_speakers")
    parser.add_argument("--train_split", default="train")
    parser.add_argument("--test_split", default="test")
    parser.add_argument("--num_folds", type=int, default=None,
                        help="folds of kfold (default 5) or group (default: one per group)")
    parser.add_argument("--group_regex", default=None,
                        help="protocol group: regex on file ids, first group = group name")
    parser.add_argument("--C", default="1.0",
                        help="SVM C; a comma list picks C by 3-fold CV on training files")
    parser.add_argument("--layer", default="auto", help="audio tower layer (default: avgpool)")
    parser.add_argument("--pool", choices=("avg", "max"), default="avg")
    parser.add_argument("--window_s", type=float, default=1.0,
                        help="window when no tower fixes it (MFCC only, or any-length tower)")
    parser.add_argument("--max_windows", type=int, default=None,
                        help="at most this many windows per file")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_json", default=None)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    cli.add_data_flags(parser, required=False)
    return parser.parse_args(argv)


def _feature_sets(args, stack):
    """Yields ``(name, Features)`` for every feature set asked for."""
    from avts_tf.evaluation import checkpoint, features, mfcc
    from avts_tf.evaluation.errors import BadInput

    for path in args.features:
        if not Path(path).is_file():
            raise BadInput(f"features file {path} does not exist")
        feats = features.Features.load(path)
        yield f"{Path(path).name} ({feats.info.get('layer', '?')})", feats
    if not (args.checkpoint or args.baseline):
        return
    if not args.data:
        raise BadInput("give --data with --checkpoint or --baseline")
    window = None
    sample_rate = 16000
    if args.checkpoint:
        tower = checkpoint.load_tower(args.checkpoint, "audio")
        features.resolve_layer(tower, args.layer)
        spec = checkpoint.clip_spec_for(args.checkpoint, audio_tower=tower)
        sample_rate = spec.log_mel.sample_rate
    data = cli.prepared_data(args, stack, sample_rate=sample_rate, audio_only=True)
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


def _main() -> None:
    args = parse_args()
    cli.quiet_logs()
    from avts_tf.evaluation import audio_probe, report
    from avts_tf.evaluation.errors import BadInput

    if not (args.checkpoint or args.features or args.baseline):
        raise BadInput("nothing to evaluate: give --checkpoint, --features or --baseline mfcc")
    try:
        cs = [float(c) for c in args.C.split(",") if c.strip()]
    except ValueError:
        raise BadInput(f"--C must be numbers separated by commas, got {args.C!r}") from None
    rows, results = [], {}
    with contextlib.ExitStack() as stack:
        for name, feats in _feature_sets(args, stack):
            folds = audio_probe.make_folds(
                feats, args.protocol, train_split=args.train_split, test_split=args.test_split,
                num_folds=args.num_folds, group_regex=args.group_regex, seed=args.seed,
            )
            result = audio_probe.probe(feats, folds, cs)
            result.update(protocol=args.protocol, info=feats.info, files=len(feats.ids),
                          windows=int(len(feats.features)))
            results[name] = result
            per_fold = " ".join(f"{100 * f['accuracy']:.1f}" for f in result["folds"])
            rows.append([name, len(folds), report.mean_std(result["mean"], result["std"]),
                         per_fold])
    print(report.table(["features", "folds", "accuracy % (mean ± std)", "per fold"], rows))
    if args.output_json:
        report.write_json(args.output_json, results)
        print(f"wrote {args.output_json}")


def main() -> None:
    """Console-script entry point."""
    cli.run_tool(_main)


if __name__ == "__main__":
    main()
