"""The curriculum ablation of AVTS on the synthetic dataset, reproduced in kind.

Trains three runs with the same step budget (gin/ablation_{easy,hard,curriculum}.gin):
easy negatives only, hard negatives only, and the paper's curriculum (easy only for the
first 50/90 of the steps, then 75% easy / 25% hard). Every ``--eval_every`` steps each run
is evaluated on the held-out videos with easy and hard negatives. Prints one table of the
final sync accuracy on easy-negative and hard-negative test pairs and writes a PNG of
accuracy against step (needs matplotlib: ``pip install -e ".[bench]"``).

    avts-ablate --steps=500 --eval_every=50 --output_dir=runs/ablation

(``python tools/ablate.py`` takes the same flags, from a checkout.)

Finished runs are reused (``<output_dir>/<variant>/results.json``); an interrupted run
resumes from its last backup when the same command is run again. ``--fresh`` starts over.
"""

from pathlib import Path

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

VARIANTS = ("easy", "hard", "curriculum")  # experiments.ablation.VARIANTS (imports TensorFlow)

flags.DEFINE_integer("steps", 500, "Optimizer steps of every run (equal budgets).", lower_bound=1)
flags.DEFINE_integer(
    "eval_every", 50, "Steps between evaluations on the held-out videos.", lower_bound=1
)
shared.define_output_dir("runs/ablation", "Where runs, table and plot go.")
flags.DEFINE_list(
    "variants", list(VARIANTS), f"Runs to train (comma list of {', '.join(VARIANTS)})."
)
flags.register_validator(
    "variants",
    lambda v: bool(v) and set(v) <= set(VARIANTS),
    f"unknown or no variant; choose among {', '.join(VARIANTS)}",
)
flags.DEFINE_multi_string("gin_param", [], "Extra gin bindings for every run.")
flags.DEFINE_string("plot", None, "PNG path (default: <output_dir>/ablation.png).")
flags.DEFINE_bool("fresh", False, "Delete earlier runs in output_dir first.")
FLAGS = flags.FLAGS


def _main(argv):
    app.no_positional(argv)
    from avts_tf.experiments import ablation

    output_dir = Path(FLAGS.output_dir)
    results = ablation.run_all(
        output_dir, FLAGS.variants, FLAGS.steps, FLAGS.eval_every, FLAGS.gin_param, FLAGS.fresh
    )
    table = ablation.format_table(results)
    (output_dir / "table.md").write_text(table + "\n", encoding="utf-8")
    plot = Path(FLAGS.plot) if FLAGS.plot else output_dir / "ablation.png"
    try:
        print(f"plot: {ablation.plot_history(results, plot)}")
    except ImportError as error:
        print(f"plot skipped: {error}")
    failures = ablation.check_ordering(results)
    print("paper's ordering in kind: " + ("holds" if not failures else "; ".join(failures)))
    print(table)


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
