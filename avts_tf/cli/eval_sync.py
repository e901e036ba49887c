r"""Synchronization accuracy of a training run on held-out videos, per negative kind.

    avts-eval-sync --model_dir=runs/quickstart --data=PREPARED_OR_MEDIA \
        [--split=test] [--kinds=easy,hard,super_hard] [--output_json=sync.json]

(``python tools/eval_sync.py`` takes the same flags, from a checkout; ``--checkpoint`` is
another name of ``--model_dir``, as in the other evaluation tools.)

``sync_accuracy`` (easy negatives: audio of another video) is the paper's protocol;
``hard`` (same video, no overlap) and ``super_hard`` (same video, shifted but
overlapping) use the run's sampler settings. The model is rebuilt from the run's towers
and ``run.json`` (task margin and threshold, clip and log-mel settings).
"""

import contextlib
from pathlib import Path

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

shared.define_run(name="model_dir", alias="checkpoint", check=(
    lambda p: p is None or Path(p).is_dir(),
    "does not exist (or is not a folder); give a training run's model_dir"))
flags.DEFINE_string("split", "test", "Held-out split.")
flags.DEFINE_list("kinds", ["easy", "hard", "super_hard"],
                  "Negative kinds to score (easy is always scored).")
flags.DEFINE_integer("clips_per_video", 4, "Clips per video.", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Pairs per forward pass.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Random seed of the negative pairs.")
shared.define_output_json()
shared.define_data_flags()
FLAGS = flags.FLAGS


def _split(data: Path) -> str:
    """``--split``; for media prepared here into one split (a folder, a file), that split."""
    from avts_tf.data.manifest import Manifest
    from avts_tf.evaluation import records_io

    present = Manifest.read(data).split_names
    if (FLAGS["split"].present or records_io.is_prepared(FLAGS.data)
            or FLAGS.split in present or len(present) != 1):
        return FLAGS.split
    return present[0]  # every file given is scored


def _main(argv: list[str]) -> None:
    app.no_positional(argv)
    app.quiet_logs()
    from avts_tf.evaluation import checkpoint, prepared, report, sync

    kinds = sync.check_kinds(shared.split_list(FLAGS.kinds) or ["easy"])
    spec_rate = checkpoint.run_clip_spec(FLAGS.model_dir).log_mel.sample_rate
    sync.clip_cutter(FLAGS.model_dir, kinds)  # A run without a sync task: before any decoding.
    with contextlib.ExitStack() as stack:
        data = prepared.prepared_data(shared.data_source(FLAGS.model_dir), stack,
                                      sample_rate=spec_rate)
        results = sync.evaluate_sync(
            FLAGS.model_dir, data, _split(data), kinds, FLAGS.clips_per_video, FLAGS.batch_size,
            FLAGS.seed,
        )
    rows = []
    for kind in kinds:
        key = "sync_accuracy" if kind == "easy" else f"sync_accuracy_{kind}"
        label = "easy (paper protocol)" if kind == "easy" else kind
        pairs = results[f"pairs_{kind}"]
        accuracy = report.mean_std(results[key]) if pairs else "n/a (videos too short)"
        rows.append([label, accuracy, pairs])
    print(report.table(["negatives", "sync accuracy %", "negative pairs"], rows))
    if FLAGS.output_json:
        report.write_json(FLAGS.output_json, results)
        print(f"wrote {FLAGS.output_json}")


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
