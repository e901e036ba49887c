"""Train a task from a gin recipe (``avts-train``, ``python tools/train.py``).

    avts-train --gin_file=quickstart [--gin_param="train.Trainer.train_steps=100"]
        [--model_dir=runs/quickstart] [--overwrite]

``--gin_file`` takes a path or a built-in recipe's name (``quickstart``,
``gin/quickstart.gin``). Re-running the same command resumes from the newest checkpoint in
``--model_dir``. With ``TF_CONFIG`` set, each process is one worker of
``MultiWorkerMirroredStrategy`` (see docs/distributed.md);
``--gin_param=train.make_strategy.cpu_replicas=2`` runs ``MirroredStrategy`` over two
logical CPU devices.

The last line printed is ``<headline>: 0.xxx``, the task's headline metric on the
held-out videos (``Task.headline``); all metrics go to ``<model_dir>/eval.json``.
"""

from __future__ import annotations

import os

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

flags.DEFINE_multi_string(
    "gin_file",
    [],
    "Gin recipes, applied in order: paths or built-in "
    "names (quickstart, mc3_curriculum, tssl_quickstart, ...).",
)
flags.DEFINE_multi_string("gin_param", [], "Gin bindings, e.g. 'train.Trainer.train_steps=100'.")
shared.define_run(
    "Output folder (default: runs/<first recipe's name>).",
    name="model_dir",
    alias=None,
    required=False,
)
flags.DEFINE_bool(
    "overwrite",
    False,
    "Start afresh in a model_dir whose saved configuration "
    "differs from this one (its checkpoints and towers are replaced), or write "
    "into a folder holding other files.",
)
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> int:
    app.no_positional(argv)
    if not FLAGS.gin_file:
        app.fail("no recipe given; add --gin_file=quickstart (or a path to a .gin file)")
    from avts_tf import config, distribute, errors, recipes, train

    config.parse_gin(FLAGS.gin_file, FLAGS.gin_param)
    # Before anything else touches TensorFlow: logical CPUs and the collectives of
    # MultiWorkerMirroredStrategy are fixed when it initialises.
    distribute.make_strategy()
    model_dir = FLAGS.model_dir or os.path.join("runs", recipes.stem(FLAGS.gin_file[0]))
    try:
        # The groups are built here, outside train.run, so that a binding gin evaluates
        # while building them (a refused @data.ClipSpec()) is named by failed_binding.
        results = train.run(
            model_dir=model_dir,
            model=train.Model(),
            trainer=train.Trainer(),
            evaluation=train.Evaluation(),
            runtime=train.Runtime(),
            overwrite=FLAGS.overwrite,
        )
    except (ValueError, TypeError) as err:  # A binding gin evaluated before the run began.
        configurable = errors.failed_binding(err)
        if configurable is None:
            raise
        app.fail(
            f"{errors.without_gin_note(err).strip().rstrip('.')}; fix the binding of "
            f"{configurable} in the recipe or --gin_param"
        )
    if results.preempted_at is not None:
        print(
            f"preempted at batch {results.preempted_at}; re-run the same command to resume",
            flush=True,
        )
        return 0
    print(f"eval: {dict(results)}")
    headline = results.get(results.headline)
    print(f"{results.headline}: " + ("undefined" if headline is None else f"{headline:.3f}"))
    return 0


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
