r"""Extract frozen features of a video or audio tower to ``.npz`` files.

    avts-extract --checkpoint=runs/quickstart --tower=audio \
        --data=DATA_DIR_OR_MEDIA --output=features.npz [--layer=avgpool] [--pool=avg]
    avts-extract --checkpoint=runs/quickstart --tower=audio --data=MEDIA \
        --output_dir=embeddings [--hop_s=0.1]
    avts-extract --checkpoint=runs/quickstart/video_tower.keras --list_layers

(``python tools/extract.py`` takes the same flags, from a checkout.)

``--checkpoint`` is a ``.keras`` tower or a training run's model_dir. ``--data`` is a
prepared dataset, or media (a folder, a CSV, a known layout) prepared into a temporary
folder first. Audio features are computed per window of the tower's input length; video
features per clip (``--num_clips`` evenly spaced clips per video). The layer's output is
averaged (or maxed) over time and space. ``--layer=shared`` gives embeddings in the space
the run compares audio with video in (``avts_tf.evaluation.shared_space``): the tower's
output for AVTS, its projection by the temporal task's head (L2-normalised) for a temporal
run, so a video's and a sound's embeddings can be ranked against each other.

The ``.npz`` holds ``features`` [windows, dim], ``file_index`` [windows] (row of the
window's file), and per file ``ids``, ``labels`` (-1: unlabelled), ``splits``, plus
``label_names`` and ``info_*`` strings (tower, layer, pool, window).

``--output_dir`` writes one ``<file id>.npz`` per input file instead (or as well), as
OpenL3 does: ``embedding`` [clips, dim] and ``timestamps`` [clips], each window's start in
seconds (a second path to a file, or a byte-identical copy, is ingested once and gets the
same arrays under its own name); windows start every ``--hop_s`` seconds (default: one
window length, no overlap; video: one clip length, rounded to whole frames).
"""

import contextlib

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

shared.define_run(
    "A .keras tower or a training run's model_dir.",
    check=(shared.exists_or_none, shared.TOWER_OR_RUN),
)
flags.DEFINE_enum(
    "tower", "auto", ["auto", "video", "audio"], "Which tower (auto: from a .keras file's input)."
)
flags.DEFINE_bool("list_layers", False, "Print the tower's layer names and exit.")
flags.DEFINE_string(
    "layer",
    "auto",
    "Layer to read (auto: 'avgpool' if present, else the "
    "output; shared: the space the run compares audio with video in).",
)
flags.DEFINE_enum("pool", "avg", ["avg", "max"], "Pooling over time and space.")
shared.define_output("The combined .npz to write.")
flags.DEFINE_string(
    "output_dir",
    None,
    "Folder of one <file id>.npz per input file: "
    "'embedding' [clips, dim] and 'timestamps' [clips] (start, seconds).",
)
flags.DEFINE_float(
    "hop_s",
    None,
    "With --output_dir: seconds between window starts (default: the window length, no overlap).",
)
flags.register_validator("hop_s", lambda v: v is None or v > 0, "must be > 0 seconds")
flags.DEFINE_list("splits", None, "Comma-separated splits (default: all).")
flags.DEFINE_integer("batch_size", 32, "Windows per forward pass.", lower_bound=1)
flags.DEFINE_integer("num_clips", 10, "Video clips per video.", lower_bound=1)
flags.DEFINE_integer(
    "max_windows", None, "At most this many audio windows per file.", lower_bound=1
)
flags.DEFINE_float("window_s", 1.0, "Audio window when the tower accepts any length.")
flags.register_validator("window_s", lambda v: v > 0, "must be > 0 seconds")
shared.define_quiet("No progress bar.")
shared.define_data_flags(required=False)  # Not needed with --list_layers.
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> None:
    app.no_positional(argv)
    app.quiet_logs()
    from avts_tf.errors import UserError
    from avts_tf.evaluation import checkpoint, embeddings, features

    which = embeddings.which_tower(FLAGS.checkpoint, FLAGS.tower)
    tower = checkpoint.load_tower(FLAGS.checkpoint, which)
    if FLAGS.list_layers:
        print("\n".join(features.layer_names(tower)))
        return
    if not FLAGS.data or not (FLAGS.output or FLAGS.output_dir):
        raise UserError("give --data and --output or --output_dir (or --list_layers)")
    if FLAGS.output_dir and FLAGS.max_windows:
        raise UserError(
            "--max_windows drops windows, so --output_dir would hold gaps; use "
            "--hop_s to write fewer windows per file"
        )
    with contextlib.ExitStack() as stack:  # holds raw media's prepared copy
        found = embeddings.extract(
            FLAGS.checkpoint,
            which,
            tower,
            shared.data_source(FLAGS.checkpoint),
            stack,
            layer=FLAGS.layer,
            pool=FLAGS.pool,
            splits=shared.split_list(FLAGS.splits),
            batch_size=FLAGS.batch_size,
            num_clips=FLAGS.num_clips,
            window_s=FLAGS.window_s,
            max_windows=FLAGS.max_windows,
            hop_s=FLAGS.hop_s,
            output=FLAGS.output,
            output_dir=FLAGS.output_dir,
            progress=not FLAGS.quiet,
        )
    if found.combined is not None:
        feats = found.combined
        print(
            f"wrote {FLAGS.output}: {feats.features.shape[0]} windows x "
            f"{feats.features.shape[1]} features from {len(feats.ids)} files "
            f"({_described(feats.info)})"
        )
    if found.per_file is not None:
        feats = found.per_file
        copies = len(found.written) - len(feats.ids)
        print(
            f"wrote {len(found.written)} files to {FLAGS.output_dir}: "
            f"{feats.features.shape[0]} windows x {feats.features.shape[1]} features "
            f"({_described(feats.info)})"
            + (
                f"; {copies} of them for inputs that duplicate another (a link or a "
                "copy, ingested once)"
                if copies
                else ""
            )
        )


def _described(info: dict[str, str]) -> str:
    head = f", head {info['head']}" if "head" in info else ""
    return f"layer {info['layer']}, pool {FLAGS.pool}{head}"


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
