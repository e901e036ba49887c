"""Robust video fingerprinting with a run's towers (``avts-eval-fingerprint``).

    avts-eval-fingerprint --checkpoint runs/quickstart [--data PREPARED] [--random_init]
        [--fusion concat|zmax]
        [--query_split test --distractor_split train] [--distortions low_bitrate,...]
        [--work_dir DIR] [--output_json f.json]

Each query is a distorted copy of a ``--query_split`` video (low-bitrate re-encode, crop
and resize, brightness, speed ±10%, audio noise; made with PyAV); the database holds the
originals and the ``--distractor_split`` videos. Prints top-1 identification accuracy and
mAP per distortion (see ``avts_tf.evaluation.fingerprint``; the protocol is ours), then
``fingerprint: top1=0.xxx mAP=0.xxx`` (the run's mean over distortions) last.
"""

from __future__ import annotations

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

shared.define_run()
shared.define_data("A prepared dataset whose source files exist (default: the run's).")
flags.DEFINE_string("query_split", "test", "Split whose videos are distorted into queries.")
flags.DEFINE_string("distractor_split", "train", "Split added to the database.")
flags.DEFINE_list("distortions", None, "Distortions (default: all).")
flags.DEFINE_integer("num_clips", 10, "Clips averaged per file.", lower_bound=1)
flags.DEFINE_enum(
    "fusion",
    "concat",
    ["concat", "zmax"],
    "How the video and audio "
    "fingerprints are combined: concat (one concatenated feature) or zmax "
    "(each modality's similarities z-normalised, the larger of the two).",
)
flags.DEFINE_bool("random_init", False, "Also score the towers freshly initialised.")
flags.DEFINE_string("work_dir", None, "Where the distorted copies go (default: temporary).")
flags.DEFINE_integer("seed", 0, "Seed of the random distortions.")
shared.define_output_json("Write the results here.")
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> int:
    app.no_positional(argv)
    from avts_tf.evaluation import fingerprint

    found = fingerprint.evaluate_run(
        FLAGS.checkpoint,
        FLAGS.data,
        FLAGS.query_split,
        FLAGS.distractor_split,
        FLAGS.distortions,
        FLAGS.num_clips,
        FLAGS.fusion,
        FLAGS.random_init,
        FLAGS.work_dir,
        FLAGS.seed,
    )
    print(
        f"{found.queries} queries per distortion, database of {found.queries} originals + "
        f"{found.distractors} distractors"
    )
    print(fingerprint.table(found))
    if FLAGS.output_json:
        png = fingerprint.write_results(FLAGS.output_json, found.results)
        print(f"wrote {FLAGS.output_json}" + (f" and {png}" if png else ""))
    print(fingerprint.headline(found.results))
    return 0


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
