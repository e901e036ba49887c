r"""Fine-tune the video tower for action recognition; video-level test accuracy.

    avts-finetune --init=runs/quickstart --data=UCF101_ROOT --layout=ucf101 \
        --folds=1,2,3 [--fusion] [--steps=2000] [--output_json=ft.json]
    avts-finetune --init=scratch --arch=runs/quickstart --data=PREPARED
    avts-finetune --init=scratch --gin_file=quickstart --data=PREPARED
    avts-finetune --init=torchvision:r2plus1d_18:r2plus1d_18-91a641e6.pth \
        --data=PREPARED [--gin_param="data.ClipSpec.crop_size = 112"]

(``python tools/finetune.py`` takes the same flags, from a checkout.)

``--init`` is an AVTS checkpoint (a model_dir or a ``video_tower.keras``; with
``--fusion`` the run's ``audio_tower.keras`` too), ``scratch``: the same architecture
with fresh weights, taken from ``--arch CHECKPOINT`` or built by a training recipe
(``--gin_file``), or ``torchvision:ARCH:FILE.pth`` (below). Training uses random clips of
the training split; the test accuracy averages the softmax of ``--clips_per_video``
evenly spaced clips per video. With raw UCF101/HMDB51 folders, ``--folds 1,2,3`` runs
the three official splits and reports mean ± std. Raw media is prepared with every video,
sound or not (about half of UCF101's classes have none), unless ``--fusion`` needs the
audio; a plain folder of labelled videos gets a held-out split ``test`` of 10% of each
label, as ``avts-prepare`` does.

``--init torchvision:ARCH:FILE.pth`` starts from a torchvision ``r3d_18``, ``mc3_18`` or
``r2plus1d_18`` state_dict (e.g. its Kinetics-400 weights; needs
``pip install "avts_tf[torch]"``), converted to the avts_tf tower of that name without
its ``fc`` head (the classifier here replaces it). torchvision's models take frames
normalised with Kinetics' mean (0.43216, 0.394666, 0.37645) and std (0.22803, 0.22145,
0.216989), while the pipeline yields frames in [0, 1], so the converted tower starts
with that normalisation. Clips follow ``--gin_file`` / ``--gin_param``
(``data.ClipSpec.*``) or the ``ClipSpec`` defaults (8 frames, 32 x 32 crops);
torchvision's weights were trained on 16 x 112 x 112 clips of frames resized to
128 x 171, so for them prepare the data with ``--short_side 128`` and bind
``data.ClipSpec.num_frames = 16`` and ``data.ClipSpec.crop_size = 112``.
"""

from pathlib import Path

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

TORCHVISION = "torchvision:"  # evaluation.finetune.TORCHVISION (imports TensorFlow)


def _valid_init(init: str | None) -> bool:
    return init is None or init == "scratch" or init.startswith(TORCHVISION) or Path(init).exists()


shared.define_run(
    "'scratch', an AVTS model_dir / video_tower.keras, or torchvision:ARCH:FILE.pth.",
    name="init",
    check=(
        _valid_init,
        "does not exist; give 'scratch', a training run's "
        "model_dir, a video_tower.keras or torchvision:ARCH:FILE.pth",
    ),
)
flags.DEFINE_string("arch", None, "scratch: checkpoint whose architecture is re-initialized.")
flags.register_validator(
    "arch",
    shared.exists_or_none,
    "does not exist; give a training run's model_dir or a video_tower.keras",
)
flags.DEFINE_multi_string(
    "gin_file",
    [],
    "scratch: training recipe that builds the towers "
    "(a path or a built-in name); torchvision: recipe whose clip "
    "settings to use.",
)
flags.DEFINE_multi_string("gin_param", [], "Extra gin bindings.")
flags.DEFINE_bool("fusion", False, "Add the audio tower (concatenated features).")
flags.DEFINE_list("folds", None, "Official splits of raw UCF101/HMDB51 to run, e.g. 1,2,3.")
flags.register_validator(
    "folds",
    lambda v: shared.integer_list(v) and "0" not in (v or []),
    "must be positive integers separated by commas, e.g. 1,2,3",
)
shared.define_splits()
flags.DEFINE_integer(
    "few_shot", None, "Use only this many labelled training videos per class.", lower_bound=1
)
flags.DEFINE_string("layer", "auto", "Tower layer fed to the classifier.")
flags.DEFINE_integer("steps", 1000, "Training steps.", lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "Clips per training batch.", lower_bound=1)
flags.DEFINE_float("lr", 1e-3, "Adam learning rate.")
flags.register_validator("lr", lambda v: v > 0, "must be > 0")
flags.DEFINE_integer(
    "head_steps", 0, "First train only the classifier on frozen towers (LP-FT).", lower_bound=0
)
flags.DEFINE_float(
    "dropout", 0.5, "Dropout before the classifier.", lower_bound=0.0, upper_bound=0.99
)
flags.DEFINE_integer("clips_per_video", 10, "Test clips per video.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("save", None, "Write the fine-tuned model (.keras).")
shared.define_output_json()
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity (0-2).", lower_bound=0, upper_bound=2)
shared.define_data_flags()
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> None:
    app.no_positional(argv)
    app.quiet_logs()
    import numpy as np

    from avts_tf import train
    from avts_tf.evaluation import finetune, report

    args = FLAGS
    settings = finetune.Settings(
        init=args.init,
        arch=args.arch,
        recipe=train.Recipe(tuple(args.gin_file or ()), tuple(args.gin_param or ())),
        fusion=args.fusion,
        train_split=args.train_split,
        test_split=args.test_split,
        few_shot=args.few_shot,
        layer=args.layer,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        head_steps=args.head_steps,
        dropout=args.dropout,
        clips_per_video=args.clips_per_video,
        seed=args.seed,
        save=args.save,
        verbose=args.verbose,
    )

    def fold_done(fold: int, result: dict) -> None:
        print(
            f"fold {fold}: video accuracy {100 * result['accuracy']:.1f}% "
            f"(clip {100 * result['clip_accuracy']:.1f}%, {result['videos']} videos)"
        )

    results = finetune.run_folds(
        settings,
        shared.data_source(settings.tower_run),
        [int(f) for f in shared.split_list(args.folds) or [args.fold]],
        on_fold=fold_done,
    )
    accuracies = np.asarray([r["accuracy"] for r in results])
    name = args.init + (" + audio" if args.fusion else "")
    print(
        report.table(
            ["init", "folds", "video accuracy % (mean ± std)"],
            [[name, len(results), report.mean_std(accuracies.mean(), accuracies.std())]],
        )
    )
    if args.output_json:
        report.write_json(
            args.output_json,
            {
                "init": args.init,
                "fusion": args.fusion,
                "mean": float(accuracies.mean()),
                "std": float(accuracies.std()),
                "folds": results,
            },
        )
        print(f"wrote {args.output_json}")


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
