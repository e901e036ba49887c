r"""The temporal task's controls over seeds (``avts-controls``): the heads each one removes.

    avts-controls --output_dir=runs/controls \
        [--controls=permuted_labels,shuffled_frames,unrelated_audio] [--seeds=0,...,9] \
        [--gin_file=tssl_quickstart] [--gin_param=...] [--margin=0.05] [--fresh]

(``python tools/controls.py`` takes the same flags, from a checkout.)

Trains the recipe (default the built-in ``tssl_quickstart``) once per control and seed into
``<output_dir>/<control>/seed<seed>``, then prints every run's held-out metrics (a ``*``
marks those its control should bring to chance), the mean over seeds, one line per removed
head (held-out mean and single runs, the last epoch's training views where the control
acts) and a last line saying whether every removed head's seed mean is within chance ±
``--margin``. Writes ``table.md`` and ``controls.json`` to ``--output_dir``. Finished runs
are reused; an interrupted one resumes when the same command is run again. Add ``none``
to ``--controls`` for the uncontrolled runs beside them.

Why ten seeds by default: one run's held-out value of a removed head is a random function of
the towers' features, which spreads around chance (the quickstart's video direction head
under ``shuffled_frames`` gave 0.349-0.630 over seeds 0-9, mean 0.510; seeds 0-4 alone had a
mean of 0.560). The quickstart takes about 1.5 minutes a run on 2 cores: 3 controls x 10
seeds is about 50 minutes.
"""

from pathlib import Path

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared
from avts_tf.experiments.controls import CONTROLS  # No TensorFlow at import: flags first.

shared.define_output_dir("runs/controls", "Where runs, table and JSON go.")
flags.DEFINE_list(
    "controls",
    list(CONTROLS[1:]),
    f"Controls to train (comma list of "
    f"{', '.join(CONTROLS)}; 'none' trains without a control, for reference).",
)
flags.register_validator(
    "controls",
    lambda v: bool(v) and set(v) <= set(CONTROLS),
    f"unknown or no control; choose among {', '.join(CONTROLS)}",
)
flags.DEFINE_list(
    "seeds",
    [str(seed) for seed in range(10)],
    "train.Trainer.seed of each run (comma list of integers).",
)
flags.register_validator(
    "seeds",
    lambda v: bool(v) and shared.integer_list(v),
    "must be integers >= 0 separated by commas, e.g. 0,1,2",
)
flags.DEFINE_multi_string(
    "gin_file",
    None,
    "Recipe of every run (default tssl_quickstart); its objective must be objectives.temporal.",
)
flags.DEFINE_multi_string("gin_param", [], "Extra gin bindings of every run.")
flags.DEFINE_float("margin", 0.05, "Allowed distance of a removed head from chance.")
flags.register_validator("margin", lambda v: 0 < v < 1, "must be in (0, 1)")
flags.DEFINE_bool("fresh", False, "Delete the runs of the chosen controls and seeds first.")
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> None:
    app.no_positional(argv)
    app.quiet_logs()
    from avts_tf.evaluation import controls, report
    from avts_tf.experiments import controls as control_runs

    def trained(run: controls.ControlRun, seconds: float | None) -> None:
        shown = ", ".join(
            f"{run.titles[m]} {run.held_out[m]:.3f}"
            for m in run.removed or tuple(run.chance)[:1]
            if m in run.held_out
        )
        how = "reused" if seconds is None else f"{seconds:.0f} s"
        print(f"[{run.control} seed {run.seed}] {how}: {shown}", flush=True)

    runs = control_runs.train_all(
        FLAGS.output_dir,
        FLAGS.controls,
        [int(s) for s in FLAGS.seeds],
        FLAGS.gin_file or ["tssl_quickstart"],
        FLAGS.gin_param,
        FLAGS.fresh,
        on_run=trained,
    )
    found = controls.verdicts(runs, FLAGS.margin)
    text = "\n".join(
        [controls.table(runs), "", *(v.line() for v in found), controls.summary(found)]
    )
    (Path(FLAGS.output_dir) / "table.md").write_text(text + "\n", encoding="utf-8")
    report.write_json(Path(FLAGS.output_dir) / "controls.json", controls.as_json(runs, found))
    print()
    print(text)


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
