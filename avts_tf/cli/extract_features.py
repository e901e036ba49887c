"""Extract frozen features of a video or audio tower to an ``.npz``.

``avts-extract`` (or ``python tools/extract_features.py`` from a checkout):

    python tools/extract_features.py --checkpoint runs/quickstart --tower audio \
        --data DATA_DIR_OR_MEDIA --output features.npz [--layer avgpool] [--pool avg]
    python tools/extract_features.py --checkpoint runs/quickstart/video_tower.keras --list_layers

``--checkpoint`` is a ``.keras`` tower or a training run's model_dir. ``--data`` is a
prepared dataset, or media (a folder, a CSV, a known layout) prepared into a temporary
folder first. Audio features are computed per window of the tower's input length; video
features per clip (``--num_clips`` evenly spaced clips per video). The layer's output is
averaged (or maxed) over time and space.

The ``.npz`` holds ``features`` [windows, dim], ``file_index`` [windows] (row of the
window's file), and per file ``ids``, ``labels`` (-1: unlabelled), ``splits``, plus
``label_names`` and ``info_*`` strings (tower, layer, pool, window).
"""

import argparse
import contextlib
from pathlib import Path

from avts_tf.evaluation import cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help=".keras tower or model_dir")
    parser.add_argument("--tower", choices=("auto", "video", "audio"), default="auto",
                        help="which tower (auto: from a .keras file's input)")
    parser.add_argument("--list_layers", action="store_true",
                        help="print the tower's layer names and exit")
    parser.add_argument("--layer", default="auto",
                        help="layer to read (auto: 'avgpool' if present, else the output)")
    parser.add_argument("--pool", choices=("avg", "max"), default="avg",
                        help="pooling over time and space")
    parser.add_argument("--output", help="the .npz to write")
    parser.add_argument("--splits", default=None, help="comma-separated splits (default: all)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_clips", type=int, default=10, help="video clips per video")
    parser.add_argument("--max_windows", type=int, default=None,
                        help="at most this many audio windows per file")
    parser.add_argument("--window_s", type=float, default=1.0,
                        help="audio window when the tower accepts any length")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    cli.add_data_flags(parser, required=False)  # Not needed with --list_layers.
    return parser.parse_args(argv)


def _which(checkpoint: str, tower: str) -> str:
    from avts_tf.evaluation.errors import BadInput

    if tower != "auto":
        return tower
    path = Path(checkpoint)
    for name in ("video", "audio"):
        if path.name.startswith(name):
            return name
    if path.suffix == ".keras":
        import keras

        import avts_tf.backbones  # noqa: F401

        try:
            rank = len(keras.saving.load_model(path, compile=False).inputs[0].shape)
        except Exception as err:  # noqa: BLE001
            raise BadInput(f"cannot load {path}: {type(err).__name__}: {err}") from None
        return "video" if rank == 5 else "audio"
    if not path.exists():
        raise BadInput(f"checkpoint {path} does not exist")
    raise BadInput("--checkpoint is a model_dir: give --tower video or --tower audio")


def _main() -> None:
    args = parse_args()
    cli.quiet_logs()
    from avts_tf.evaluation import checkpoint, features
    from avts_tf.evaluation.errors import BadInput

    which = _which(args.checkpoint, args.tower)
    tower = checkpoint.load_tower(args.checkpoint, which)
    if args.list_layers:
        print("\n".join(features.layer_names(tower)))
        return
    if not args.data or not args.output:
        raise BadInput("give --data and --output (or --list_layers)")
    features.resolve_layer(tower, args.layer)  # Fail early on a bad layer name.
    spec = checkpoint.clip_spec_for(
        args.checkpoint, tower if which == "video" else None, tower if which == "audio" else None
    )
    with contextlib.ExitStack() as stack:
        data = cli.prepared_data(
            args, stack, sample_rate=spec.log_mel.sample_rate, audio_only=which == "audio"
        )
        feats = features.tower_features(
            tower, which, data, spec, layer=args.layer, pool=args.pool,
            splits=cli.split_list(args.splits), batch_size=args.batch_size,
            num_clips=args.num_clips, window_s=args.window_s, max_windows=args.max_windows,
            progress=not args.quiet,
        )
    feats.info["checkpoint"] = str(args.checkpoint)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    feats.save(args.output)
    print(
        f"wrote {args.output}: {feats.features.shape[0]} windows x {feats.features.shape[1]} "
        f"features from {len(feats.ids)} files (layer {feats.info['layer']}, pool {args.pool})"
    )


def main() -> None:
    """Console-script entry point."""
    cli.run_tool(_main)


if __name__ == "__main__":
    main()
