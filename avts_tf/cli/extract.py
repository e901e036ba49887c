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
from pathlib import Path

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

shared.define_run("A .keras tower or a training run's model_dir.",
                  check=(shared.exists_or_none, shared.TOWER_OR_RUN))
flags.DEFINE_enum("tower", "auto", ["auto", "video", "audio"],
                  "Which tower (auto: from a .keras file's input).")
flags.DEFINE_bool("list_layers", False, "Print the tower's layer names and exit.")
flags.DEFINE_string("layer", "auto", "Layer to read (auto: 'avgpool' if present, else the "
                    "output; shared: the space the run compares audio with video in).")
flags.DEFINE_enum("pool", "avg", ["avg", "max"], "Pooling over time and space.")
shared.define_output("The combined .npz to write.")
flags.DEFINE_string("output_dir", None, "Folder of one <file id>.npz per input file: "
                    "'embedding' [clips, dim] and 'timestamps' [clips] (start, seconds).")
flags.DEFINE_float("hop_s", None, "With --output_dir: seconds between window starts "
                   "(default: the window length, no overlap).")
flags.register_validator("hop_s", lambda v: v is None or v > 0, "must be > 0 seconds")
flags.DEFINE_list("splits", None, "Comma-separated splits (default: all).")
flags.DEFINE_integer("batch_size", 32, "Windows per forward pass.", lower_bound=1)
flags.DEFINE_integer("num_clips", 10, "Video clips per video.", lower_bound=1)
flags.DEFINE_integer("max_windows", None, "At most this many audio windows per file.",
                     lower_bound=1)
flags.DEFINE_float("window_s", 1.0, "Audio window when the tower accepts any length.")
flags.register_validator("window_s", lambda v: v > 0, "must be > 0 seconds")
shared.define_quiet("No progress bar.")
shared.define_data_flags(required=False)  # Not needed with --list_layers.
FLAGS = flags.FLAGS
SHARED = "shared"  # --layer: the space the run compares audio with video in


def _which(checkpoint: str, tower: str) -> str:
    from avts_tf.errors import UserError

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
            raise UserError(f"cannot load {path}: {type(err).__name__}: {err}") from None
        return "video" if rank == 5 else "audio"
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist; give a .keras tower or a training "
                        "run's model_dir")
    raise UserError("--checkpoint is a model_dir: give --tower video or --tower audio")


def _main(argv: list[str]) -> None:
    app.no_positional(argv)
    app.quiet_logs()
    from avts_tf.errors import UserError
    from avts_tf.evaluation import checkpoint, features, prepared

    which = _which(FLAGS.checkpoint, FLAGS.tower)
    tower = checkpoint.load_tower(FLAGS.checkpoint, which)
    if FLAGS.list_layers:
        print("\n".join(features.layer_names(tower)))
        return
    if not FLAGS.data or not (FLAGS.output or FLAGS.output_dir):
        raise UserError("give --data and --output or --output_dir (or --list_layers)")
    if FLAGS.output_dir and FLAGS.max_windows:
        raise UserError("--max_windows drops windows, so --output_dir would hold gaps; use "
                        "--hop_s to write fewer windows per file")
    layer, head = _layer_and_head(which, tower)  # Fails early on a bad layer name.
    spec = checkpoint.clip_spec_for(
        FLAGS.checkpoint, tower if which == "video" else None, tower if which == "audio" else None
    )
    splits = shared.split_list(FLAGS.splits)
    with contextlib.ExitStack() as stack:
        data = prepared.prepared_data(shared.data_source(FLAGS.checkpoint), stack,
                                      sample_rate=spec.log_mel.sample_rate,
                                      audio_only=which == "audio", video_only=which == "video")
        if FLAGS.output:
            feats = features.tower_features(
                tower, which, data, spec, layer=layer, pool=FLAGS.pool, splits=splits,
                batch_size=FLAGS.batch_size, num_clips=FLAGS.num_clips,
                window_s=FLAGS.window_s, max_windows=FLAGS.max_windows,
                progress=not FLAGS.quiet, head=head,
            )
            feats.info["checkpoint"] = str(FLAGS.checkpoint)
            Path(FLAGS.output).parent.mkdir(parents=True, exist_ok=True)
            feats.save(FLAGS.output)
            print(f"wrote {FLAGS.output}: {feats.features.shape[0]} windows x "
                  f"{feats.features.shape[1]} features from {len(feats.ids)} files "
                  f"({_described(feats.info)})")
        if FLAGS.output_dir:
            from avts_tf.evaluation import embeddings

            feats, timestamps = embeddings.per_file_features(
                tower, which, data, spec, hop_s=FLAGS.hop_s, layer=layer,
                pool=FLAGS.pool, splits=splits, batch_size=FLAGS.batch_size,
                window_s=FLAGS.window_s, progress=not FLAGS.quiet, head=head,
            )
            from avts_tf.data.manifest import Manifest

            duplicates = {e.id: e.same_as for e in Manifest.read(data).skipped if e.same_as}
            written = embeddings.write_per_file(feats, timestamps, FLAGS.output_dir,
                                                duplicates)
            copies = len(written) - len(feats.ids)
            print(f"wrote {len(written)} files to {FLAGS.output_dir}: "
                  f"{feats.features.shape[0]} windows x {feats.features.shape[1]} features "
                  f"({_described(feats.info)})"
                  + (f"; {copies} of them for inputs that duplicate another (a link or a "
                     "copy, ingested once)" if copies else ""))


def _layer_and_head(which: str, tower):
    """The layer to read and the head to map it through (``--layer=shared``: the run's).

    Raises:
        UserError: For an unknown layer, or ``shared`` without a training run.
    """
    from avts_tf.errors import UserError
    from avts_tf.evaluation import checkpoint, features, shared_space

    if FLAGS.layer != SHARED:
        features.resolve_layer(tower, FLAGS.layer, also_valid=(SHARED,))
        return FLAGS.layer, None
    run = checkpoint.run_dir(FLAGS.checkpoint)
    if run is None:
        raise UserError(f"--layer={SHARED} reads the space of a training run's task, but "
                        f"{FLAGS.checkpoint} is not in a run's model_dir; give the run's "
                        "--model_dir")
    towers = {which: tower, **{w: checkpoint.load_tower(run, w)
                               for w in checkpoint.TOWERS if w != which}}
    space = shared_space.of_run(run, towers["video"], towers["audio"])
    return "output", space.head(which)


def _described(info: dict[str, str]) -> str:
    head = f", head {info['head']}" if "head" in info else ""
    return f"layer {info['layer']}, pool {FLAGS.pool}{head}"


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
