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

from absl import flags, logging

from avts_tf.cli import app
from avts_tf.evaluation import cli

flags.DEFINE_string("checkpoint", None, "A training run's model_dir.", required=True)
flags.DEFINE_alias("model_dir", "checkpoint")  # the name avts-train and avts-eval-sync use
flags.DEFINE_string("train_split", "train", "Split of the retrieved (database) videos.")
flags.DEFINE_string("test_split", "test", "Split of the query videos.")
flags.DEFINE_integer("num_clips", 10, "Evenly spaced clips averaged per video.", lower_bound=1)
flags.DEFINE_bool("random_init", False, "Also score the towers freshly initialised.")
flags.DEFINE_integer("batch_size", 32, "Clips per forward pass.", lower_bound=1)
flags.DEFINE_string("output_json", None, "Write the results here.")
cli.define_data_flags(required=False)  # --data: prepared, or labelled media prepared first
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> int:
    app.no_positional(argv)
    with contextlib.ExitStack() as stack:  # holds raw media's prepared copy
        return _retrieve(stack)


def _retrieve(stack: contextlib.ExitStack) -> int:
    import keras

    from avts_tf.data import manifest
    from avts_tf.data.ingestion import sources
    from avts_tf.errors import UserError
    from avts_tf.evaluation import checkpoint, features, report, retrieval, shared_space

    video = checkpoint.load_tower(FLAGS.checkpoint, "video")
    audio = checkpoint.load_tower(FLAGS.checkpoint, "audio")
    spec = checkpoint.clip_spec_for(FLAGS.checkpoint, video_tower=video, audio_tower=audio)
    if FLAGS.data:  # media of a folder gets a held-out split per label, as avts-prepare's
        data = str(cli.prepared_data(
            cli.DataSource.from_flags(FLAGS.checkpoint), stack,
            sample_rate=spec.log_mel.sample_rate, video_only=True,
            test_fraction=sources.DEFAULT_TEST_FRACTION))
    else:
        data = checkpoint.run_dataset(FLAGS.checkpoint)
        if not manifest.exists(data):
            raise UserError(f"{data} is not a prepared dataset; prepare it with avts-prepare")
    results, rows = {}, []
    splits = [FLAGS.train_split, FLAGS.test_split]
    prepared = manifest.Manifest.read(data)
    window_s = spec.window_seconds(prepared.fps)
    with_sound = sum(1 for e in prepared.records(FLAGS.test_split) if e.num_samples)
    labelled = _check_splits(prepared, data, with_sound)
    run = checkpoint.run_dir(FLAGS.checkpoint)  # The run's heads, once the splits can be used.
    space = shared_space.of_run(run, video, audio) if run else shared_space.TOWER_OUTPUTS
    towers = {"pretrained": (video, audio, space)}
    if FLAGS.random_init:
        keras.utils.set_random_seed(0)
        towers["random init"] = (checkpoint.fresh_copy(video), checkpoint.fresh_copy(audio),
                                 space.freshly_initialised())
    if with_sound < 2:
        logging.warning("cross-modal retrieval left out: it needs two videos with sound in split "
                        "%r, found %d", FLAGS.test_split, with_sound)
    for name, (v, a, compared_in) in towers.items():
        by_class = cross = None
        if labelled:
            pooled = features.tower_features(v, "video", data, spec, splits=splits,
                                             num_clips=FLAGS.num_clips, progress=False,
                                             batch_size=FLAGS.batch_size)
            by_class = retrieval.video_retrieval(pooled, FLAGS.train_split, FLAGS.test_split)
        if with_sound >= 2:
            v_out = features.tower_features(v, "video", data, spec, layer="output",
                                            splits=[FLAGS.test_split], num_clips=FLAGS.num_clips,
                                            progress=False, batch_size=FLAGS.batch_size,
                                            head=compared_in.video_head)
            a_out = features.tower_features(a, "audio", data, spec, layer="output",
                                            splits=[FLAGS.test_split], window_s=window_s,
                                            progress=False, batch_size=FLAGS.batch_size,
                                            head=compared_in.audio_head)
            cross = retrieval.cross_modal_retrieval(v_out, a_out, FLAGS.test_split)
        results[name] = {"video_to_video": by_class, "cross_modal": cross,
                         "cross_modal_space": compared_in.name if cross else None}
        for kind, values, prefix in (("video -> video (class)", by_class, ""),
                                     ("video -> audio (same video)", cross, "v2a_"),
                                     ("audio -> video (same video)", cross, "a2v_")):
            rows.append([name, kind, *[f"{values[f'{prefix}R@{k}']:.3f}" if values else "n/a"
                                       for k in retrieval.KS]])
    print(report.table(["towers", "retrieval", *[f"R@{k}" for k in retrieval.KS]], rows))
    if with_sound >= 2:
        print(f"audio <-> video compared in {space.name}")
    if FLAGS.output_json:
        from avts_tf.evaluation import plots

        report.write_json(FLAGS.output_json, results)
        def bars(r: dict) -> dict[str, float]:
            out = {f"v->v R@{k}": r["video_to_video"][f"R@{k}"] for k in (1, 5)
                   if r["video_to_video"]}
            for label, prefix in (("v->a", "v2a_"), ("a->v", "a2v_")):
                if r["cross_modal"]:
                    out.update({f"{label} R@{k}": r["cross_modal"][f"{prefix}R@{k}"]
                                for k in (1, 5)})
            return out

        png = plots.save_next_to(FLAGS.output_json, "retrieval", lambda ax: plots.grouped_bars(
            ax, {name: bars(r) for name, r in results.items()}, "recall"))
        print(f"wrote {FLAGS.output_json}" + (f" and {png}" if png else ""))
    headline = results["pretrained"]["video_to_video"]
    if headline:
        print("retrieval: " + " ".join(f"R@{k}={headline[f'R@{k}']:.3f}" for k in retrieval.KS))
    else:
        cross = results["pretrained"]["cross_modal"]
        print("retrieval (video -> audio, unlabelled videos): " + " ".join(
            f"R@{k}={cross[f'v2a_R@{k}']:.3f}" for k in retrieval.KS))
    return 0


def _check_splits(prepared, data: str, with_sound: int) -> bool:
    """Whether retrieval by class can run (every video labelled), checked before decoding.

    Without labels only audio <-> video retrieval runs (a warning says why); with neither
    labels nor two videos with sound in the query split there is nothing to measure.

    Raises:
        UserError: A split without videos, or nothing to retrieve.
    """
    from avts_tf.errors import UserError

    roles = ((FLAGS.train_split, "database"), (FLAGS.test_split, "queries"))
    videos_of = {split: prepared.records(split) for split, _ in roles}
    for split, role in roles:
        if not videos_of[split]:
            raise UserError(
                f"no videos in split {split!r} ({role}) of {data} (splits with videos: "
                f"{', '.join(prepared.split_names) or 'none'}); name two with --train_split "
                "(database) and --test_split (queries), or prepare media with a held-out "
                "split (avts-prepare --test_fraction)")
    for split, videos in videos_of.items():
        unlabelled = sum(1 for e in videos if not e.label)
        if not unlabelled:
            continue
        problem = (f"retrieval by class needs labelled videos: {unlabelled} of {len(videos)} "
                   f"in split {split!r} of {data} have no label")
        fix = "prepare the dataset from class folders or a CSV with labels"
        if with_sound < 2:
            raise UserError(f"{problem}, and audio <-> video retrieval needs two videos with "
                            f"sound in split {FLAGS.test_split!r} (found {with_sound}); {fix}")
        logging.warning("video -> video retrieval by class left out: %s (%s); audio <-> video "
                        "retrieval goes on", problem, fix)
        return False
    return True


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
