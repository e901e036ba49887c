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

import contextlib
import dataclasses
import tempfile
from pathlib import Path

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

TORCHVISION = "torchvision:"


def _valid_init(init: str | None) -> bool:
    return init is None or init == "scratch" or init.startswith(TORCHVISION) or Path(
        init).exists()


shared.define_run("'scratch', an AVTS model_dir / video_tower.keras, or "
                  "torchvision:ARCH:FILE.pth.", name="init", check=(
                      _valid_init, "does not exist; give 'scratch', a training run's "
                      "model_dir, a video_tower.keras or torchvision:ARCH:FILE.pth"))
flags.DEFINE_string("arch", None, "scratch: checkpoint whose architecture is re-initialized.")
flags.register_validator("arch", shared.exists_or_none, "does not exist; give a training run's "
                         "model_dir or a video_tower.keras")
flags.DEFINE_multi_string("gin_file", [], "scratch: training recipe that builds the towers "
                          "(a path or a built-in name); torchvision: recipe whose clip "
                          "settings to use.")
flags.DEFINE_multi_string("gin_param", [], "Extra gin bindings.")
flags.DEFINE_bool("fusion", False, "Add the audio tower (concatenated features).")
flags.DEFINE_list("folds", None, "Official splits of raw UCF101/HMDB51 to run, e.g. 1,2,3.")
flags.register_validator("folds", lambda v: shared.integer_list(v) and "0" not in (v or []),
                         "must be positive integers separated by commas, e.g. 1,2,3")
shared.define_splits()
flags.DEFINE_integer("few_shot", None, "Use only this many labelled training videos per "
                     "class.", lower_bound=1)
flags.DEFINE_string("layer", "auto", "Tower layer fed to the classifier.")
flags.DEFINE_integer("steps", 1000, "Training steps.", lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "Clips per training batch.", lower_bound=1)
flags.DEFINE_float("lr", 1e-3, "Adam learning rate.")
flags.register_validator("lr", lambda v: v > 0, "must be > 0")
flags.DEFINE_integer("head_steps", 0, "First train only the classifier on frozen towers "
                     "(LP-FT).", lower_bound=0)
flags.DEFINE_float("dropout", 0.5, "Dropout before the classifier.", lower_bound=0.0,
                   upper_bound=0.99)
flags.DEFINE_integer("clips_per_video", 10, "Test clips per video.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("save", None, "Write the fine-tuned model (.keras).")
shared.define_output_json()
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity (0-2).", lower_bound=0,
                     upper_bound=2)
shared.define_data_flags()
FLAGS = flags.FLAGS



def _torchvision_towers(args):
    """``(video, None, spec)`` for ``--init torchvision:ARCH:FILE.pth``."""
    from avts_tf.errors import UserError
    from avts_tf.evaluation import checkpoint

    arch, _, path = args.init[len(TORCHVISION):].partition(":")
    if not arch or not path:
        raise UserError(f"--init {args.init!r}: write torchvision:ARCH:FILE.pth, e.g. "
                        f"torchvision:r2plus1d_18:r2plus1d_18-91a641e6.pth")
    if args.fusion or args.arch:
        raise UserError("--init torchvision:... has no audio tower and no --arch: drop "
                        "--fusion / --arch")
    spec = checkpoint.recipe_clip_spec(args.gin_file, args.gin_param)
    return checkpoint.torchvision_video_tower(arch, path, spec), None, spec


def _tower_run(args) -> str | None:
    """The run (or ``.keras`` file) whose towers ``--init`` or ``--arch`` names, if any."""
    if args.init.startswith(TORCHVISION):
        return None
    return args.init if args.init != "scratch" else args.arch


def _towers(args, fps):
    """``(video, audio or None, spec)`` for this run's initialization."""
    from avts_tf.errors import UserError
    from avts_tf.evaluation import checkpoint

    if args.init.startswith(TORCHVISION):
        return _torchvision_towers(args)
    source = _tower_run(args)
    if source:
        video = checkpoint.load_tower(source, "video")
        audio = checkpoint.load_tower(source, "audio") if args.fusion else None
        spec = checkpoint.clip_spec_for(source, video, audio)
        if args.init == "scratch":
            video = checkpoint.fresh_copy(video)
            audio = checkpoint.fresh_copy(audio) if audio is not None else None
        return video, audio, spec
    if not args.gin_file:
        raise UserError("--init scratch needs --arch CHECKPOINT or --gin_file RECIPE")
    video, audio, spec = checkpoint.towers_from_recipe(args.gin_file, args.gin_param, fps)
    return video, (audio if args.fusion else None), spec


def run_fold(args, data: Path, stack: contextlib.ExitStack) -> dict:
    import keras

    from avts_tf import portable
    from avts_tf.data.manifest import Manifest
    from avts_tf.evaluation import features, finetune, records_io

    keras.utils.set_random_seed(args.seed)
    fps = Manifest.read(data).fps
    video, audio, spec = _towers(args, fps)
    features.check_sample_rate(data, spec.log_mel)
    if audio is not None:
        finetune.check_audio_shape(audio, spec, fps)
    num_classes = finetune.num_classes_of(data, [args.train_split, args.test_split])
    train_data = data
    if args.few_shot:
        subset = stack.enter_context(tempfile.TemporaryDirectory(prefix="avts_few_shot_"))
        train_data = records_io.few_shot_subset(
            data, subset, args.few_shot, args.train_split, args.seed
        )
    model = finetune.classifier(video, num_classes, audio, args.layer, args.dropout)
    clips = finetune.train_clips(
        train_data, spec, args.batch_size, args.train_split, args.fusion, args.seed
    )
    finetune.fit(model, clips, args.steps, args.lr, args.head_steps, steps_per_epoch=100,
                 verbose=args.verbose)
    result = finetune.video_accuracy(
        model, data, spec, args.test_split, args.clips_per_video, fusion=args.fusion
    )
    if args.save:
        portable.portable_tower(model).save(args.save)  # Stock layers: loads without avts_tf.
    return result


def _main(argv: list[str]) -> None:
    app.no_positional(argv)
    app.quiet_logs()
    import numpy as np

    from avts_tf.data.ingestion import sources
    from avts_tf.errors import UserError
    from avts_tf.evaluation import prepared, records_io, report

    args = FLAGS
    folds = [int(f) for f in shared.split_list(args.folds) or [args.fold]]
    if len(folds) > 1 and records_io.is_prepared(args.data):
        raise UserError("--folds needs raw UCF101/HMDB51 input; a prepared folder holds one split")
    results = []
    source = shared.data_source(_tower_run(args))
    for fold in folds:
        with contextlib.ExitStack() as stack:
            prepared_dir = source.prepared_dir
            if prepared_dir and len(folds) > 1:
                prepared_dir = f"{prepared_dir}/fold{fold}"
            data = prepared.prepared_data(  # Videos without sound count unless audio is fused.
                dataclasses.replace(source, fold=fold, prepared_dir=prepared_dir), stack,
                video_only=not args.fusion, test_fraction=sources.DEFAULT_TEST_FRACTION)
            result = run_fold(args, data, stack)
        results.append({"fold": fold, **result})
        print(f"fold {fold}: video accuracy {100 * result['accuracy']:.1f}% "
              f"(clip {100 * result['clip_accuracy']:.1f}%, {result['videos']} videos)")
    accuracies = np.asarray([r["accuracy"] for r in results])
    name = args.init + (" + audio" if args.fusion else "")
    print(report.table(
        ["init", "folds", "video accuracy % (mean ± std)"],
        [[name, len(results), report.mean_std(accuracies.mean(), accuracies.std())]],
    ))
    if args.output_json:
        report.write_json(args.output_json, {
            "init": args.init, "fusion": args.fusion, "mean": float(accuracies.mean()),
            "std": float(accuracies.std()), "folds": results,
        })
        print(f"wrote {args.output_json}")


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
