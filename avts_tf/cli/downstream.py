r"""Downstream comparison on the synthetic world: pretrained towers vs random init vs MFCC.

    avts-downstream --model_dir=runs/downstream \
        [--methods=avts,tssl,avts_tssl] [--gin_param=data.synthetic_dataset.duration_s=12.0] \
        [--fsdd=../shared/data/fsdd/recordings] [--shots=1] [--repeats=3] \
        [--finetune_steps=40] [--head_steps=0,20] [--fusion] [--output_json=r.json]

(``python tools/downstream.py`` takes the same flags, from a checkout.)

Without ``--methods``, ``--model_dir`` is one pretrained run (AVTS, trained there first
with ``--gin_file``, default the built-in ``quickstart`` recipe, if it holds no towers).
With ``--methods``, each method has its run in ``<model_dir>/<method>`` (``avts``:
``quickstart``, ``tssl``: ``tssl_quickstart``, ``avts_tssl``: ``avts_tssl_quickstart``,
built-in recipes), trained first where missing, every one with the same
``--gin_param`` bindings (bind the same dataset to compare methods on the same videos).
The labelled set is the first run's dataset (``--data`` to use another); its labels are
never used in pretraining. Rows: audio and video linear probes (linear SVM on frozen
features, ``--shots`` files per class, ``--repeats`` draws; and with every training
file), few-shot fine-tuning of the video tower, directly and after fitting the
classifier on the frozen towers first (``--head_steps``); ``--fusion`` adds audio+video
fine-tuning (the AVTS paper's multisensory row); ``--fsdd`` adds the audio probe on the
Free Spoken Digit Dataset with one fold per held-out speaker.
Columns: MFCC, random init (same architecture, fresh weights), each pretrained run.
"""

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared
from avts_tf.experiments.downstream import METHODS  # No TensorFlow at import: flags first.

shared.define_run(
    "A trained run (or where to train one); with --methods, the folder of one run per method.",
    name="model_dir",
    alias=None,
)
flags.DEFINE_list(
    "methods",
    None,
    f"Pretraining methods compared, one run each (comma list of {', '.join(METHODS)}).",
)
flags.register_validator(
    "methods",
    lambda v: set(v or []) <= set(METHODS),
    f"unknown method; choose among {', '.join(METHODS)}",
)
flags.DEFINE_multi_string("gin_file", None, "Recipe of the single run (default quickstart).")
flags.DEFINE_multi_string("gin_param", [], "Extra gin bindings of every pretraining.")
shared.define_data(
    "Labelled prepared dataset (default: the first run's dataset).",
    check="does not exist; give a prepared dataset folder (avts-prepare)",
)
flags.DEFINE_string(
    "fsdd", None, "FSDD recordings (or their prepared set): speaker-held-out audio probe."
)
flags.register_validator(
    "fsdd", shared.exists_or_none, "does not exist; give the FSDD recordings folder"
)
flags.DEFINE_string(
    "fsdd_prepared", None, "Where FSDD is prepared (kept and re-used; default: temporary)."
)
flags.DEFINE_integer("shots", 1, "Labelled files per class.", lower_bound=1)
flags.DEFINE_integer("repeats", 3, "Few-shot draws.", lower_bound=1)
flags.DEFINE_integer("finetune_steps", 40, "Fine-tuning steps training every layer.", lower_bound=1)
flags.DEFINE_list(
    "head_steps",
    ["0", "20"],
    "Comma list: classifier-only steps on frozen "
    "towers before fine-tuning (LP-FT); one table row each.",
)
flags.register_validator(
    "head_steps", shared.integer_list, "must be integers >= 0 separated by commas, e.g. 0,20"
)
flags.DEFINE_integer("finetune_batch", 8, "Fine-tuning batch size.", lower_bound=1)
flags.DEFINE_float("lr", 1e-3, "Fine-tuning learning rate.")
flags.register_validator("lr", lambda v: v > 0, "must be > 0")
flags.DEFINE_integer("clips_per_video", 10, "Clips per video.", lower_bound=1)
flags.DEFINE_float("C", 1.0, "SVM C.")
flags.register_validator("C", lambda v: v > 0, "must be > 0")
flags.DEFINE_bool("fusion", False, "Add audio+video fine-tuning.")
flags.DEFINE_bool("skip_finetune", False, "Linear probe only.")
shared.define_output_json()
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> None:
    app.no_positional(argv)
    app.quiet_logs()
    from avts_tf.evaluation import downstream, report
    from avts_tf.experiments import downstream as comparison

    budget = downstream.Budget(
        shots=FLAGS.shots,
        repeats=FLAGS.repeats,
        finetune_steps=FLAGS.finetune_steps,
        finetune_batch=FLAGS.finetune_batch,
        learning_rate=FLAGS.lr,
        clips_per_video=FLAGS.clips_per_video,
        C=FLAGS.C,
    )
    found = comparison.compare(
        FLAGS.model_dir,
        budget,
        methods=FLAGS.methods,
        gin_files=FLAGS.gin_file,
        gin_params=FLAGS.gin_param,
        data=FLAGS.data,
        fsdd=FLAGS.fsdd,
        fsdd_prepared=FLAGS.fsdd_prepared,
        head_steps=[int(h) for h in shared.split_list(FLAGS.head_steps) or ["0"]],
        fusion=FLAGS.fusion,
        skip_finetune=FLAGS.skip_finetune,
    )
    print()
    print(comparison.table(found))
    if FLAGS.output_json:
        report.write_json(FLAGS.output_json, found.results)
        print(f"wrote {FLAGS.output_json}")


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
