"""Retrieval with a run's frozen towers (``avts-eval-retrieval``, ``tools/eval_retrieval.py``).

    avts-eval-retrieval --checkpoint runs/quickstart [--data PREPARED_OR_MEDIA] [--random_init]
        [--train_split train --test_split test --num_clips 10] [--output_json r.json]

Video -> video by class (test videos query training videos; R@1/5/10/20, each video the
mean of ``--num_clips`` evenly spaced clips) and audio <-> video of the same video within
the test split (see ``avts_tf.evaluation.retrieval``; among the videos with sound, ``n/a``
with a warning when fewer than two have it), compared in the space the run's task compares
them in (``avts_tf.evaluation.shared_space``: the towers' outputs for AVTS, the temporal
task's projection heads for a temporal run; the table says which). ``--data`` defaults to
the run's dataset; labelled media (a folder of label folders, a CSV, a known layout) is
prepared first, at the run's frame rate and size, a folder holding out 10% of each label as
split ``test``.
``--random_init`` adds the same towers freshly initialised. Prints a table, then
``retrieval: R@1=0.xxx R@5=0.xxx R@10=0.xxx R@20=0.xxx`` (the run's video -> video) last.
Unlabelled videos (one's own footage) leave the class rows ``n/a`` with a warning, and the
last line is the run's video -> audio: ``retrieval (video -> audio, unlabelled videos):
R@1=...``.
"""

from __future__ import annotations

import contextlib

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

shared.define_run()
shared.define_splits("Split of the retrieved (database) videos.", "Split of the query videos.")
flags.DEFINE_integer("num_clips", 10, "Evenly spaced clips averaged per video.", lower_bound=1)
flags.DEFINE_bool("random_init", False, "Also score the towers freshly initialised.")
flags.DEFINE_integer("batch_size", 32, "Clips per forward pass.", lower_bound=1)
shared.define_output_json("Write the results here.")
shared.define_data_flags(required=False)  # --data: prepared, or labelled media prepared first
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> int:
    app.no_positional(argv)
    from avts_tf.evaluation import retrieval

    source = shared.data_source(FLAGS.checkpoint) if FLAGS.data else None
    with contextlib.ExitStack() as stack:  # holds raw media's prepared copy
        found = retrieval.evaluate_run(
            FLAGS.checkpoint,
            source,
            stack,
            FLAGS.train_split,
            FLAGS.test_split,
            FLAGS.num_clips,
            FLAGS.batch_size,
            FLAGS.random_init,
        )
    print(retrieval.table(found.results))
    if found.with_sound >= 2:
        print(f"audio <-> video compared in {found.space}")
    if FLAGS.output_json:
        png = retrieval.write_results(FLAGS.output_json, found.results)
        print(f"wrote {FLAGS.output_json}" + (f" and {png}" if png else ""))
    print(retrieval.headline(found.results))
    return 0


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
