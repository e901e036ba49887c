"""Training curves of a run as a PNG (``avts-plot-run``, ``python tools/plot_run.py``).

    avts-plot-run --model_dir runs/quickstart [--output runs/quickstart/curves.png]
        [--tags epoch_loss,epoch_sync_accuracy]

One panel per epoch metric of the run's TensorBoard logs, training and held-out
(``train.Trainer.eval_every_steps``) curves together. Needs matplotlib (``[plots]`` extra).
"""

from __future__ import annotations

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

shared.define_run("An avts-train run.", name="model_dir", alias="checkpoint")
shared.define_output("PNG to write (default: <model_dir>/curves.png).")
flags.DEFINE_list("tags", None, "Tags to draw (default: every epoch metric).")
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> int:
    app.no_positional(argv)
    from pathlib import Path

    from avts_tf.evaluation import run_curves

    output = FLAGS.output or str(Path(FLAGS.model_dir) / "curves.png")
    drawn = run_curves.plot_run(FLAGS.model_dir, output, FLAGS.tags)
    print(f"wrote {output} ({len(drawn)} curves)")
    return 0


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
