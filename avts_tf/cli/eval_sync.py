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

from pathlib import Path

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

shared.define_run(
    name="model_dir",
    alias="checkpoint",
    check=(
        lambda p: p is None or Path(p).is_dir(),
        "does not exist (or is not a folder); give a training run's model_dir",
    ),
)
flags.DEFINE_string("split", "test", "Held-out split.")
flags.DEFINE_list(
    "kinds", ["easy", "hard", "super_hard"], "Negative kinds to score (easy is always scored)."
)
flags.DEFINE_integer("clips_per_video", 4, "Clips per video.", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Pairs per forward pass.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Random seed of the negative pairs.")
shared.define_output_json()
shared.define_data_flags()
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> None:
    app.no_positional(argv)
    app.quiet_logs()
    from avts_tf.evaluation import report, sync

    kinds, results = sync.evaluate_run(
        FLAGS.model_dir,
        shared.data_source(FLAGS.model_dir),
        shared.split_list(FLAGS.kinds) or ["easy"],
        FLAGS.split,
        FLAGS["split"].present,
        FLAGS.clips_per_video,
        FLAGS.batch_size,
        FLAGS.seed,
    )
    print(sync.table(kinds, results))
    if FLAGS.output_json:
        report.write_json(FLAGS.output_json, results)
        print(f"wrote {FLAGS.output_json}")


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
