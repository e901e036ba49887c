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

flags.DEFINE_string("checkpoint", None, "A training run's model_dir.", required=True)
flags.DEFINE_alias("model_dir", "checkpoint")  # the name avts-train and avts-eval-sync use
flags.DEFINE_string("data", None, "A prepared dataset whose source files exist (default: "
                    "the run's).")
flags.DEFINE_string("query_split", "test", "Split whose videos are distorted into queries.")
flags.DEFINE_string("distractor_split", "train", "Split added to the database.")
flags.DEFINE_list("distortions", None, "Distortions (default: all).")
flags.DEFINE_integer("num_clips", 10, "Clips averaged per file.", lower_bound=1)
flags.DEFINE_enum("fusion", "concat", ["concat", "zmax"], "How the video and audio "
                  "fingerprints are combined: concat (one concatenated feature) or zmax "
                  "(each modality's similarities z-normalised, the larger of the two).")
flags.DEFINE_bool("random_init", False, "Also score the towers freshly initialised.")
flags.DEFINE_string("work_dir", None, "Where the distorted copies go (default: temporary).")
flags.DEFINE_integer("seed", 0, "Seed of the random distortions.")
flags.DEFINE_string("output_json", None, "Write the results here.")
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> int:
    app.no_positional(argv)
    import tempfile
    from pathlib import Path

    import keras
    import numpy as np

    from avts_tf.data import manifest
    from avts_tf.errors import UserError
    from avts_tf.evaluation import checkpoint, fingerprint, report

    distortions = FLAGS.distortions or list(fingerprint.DISTORTIONS)
    unknown = [d for d in distortions if d not in fingerprint.DISTORTIONS]
    if unknown:
        raise UserError(f"unknown distortion {', '.join(unknown)}; valid: "
                        f"{', '.join(fingerprint.DISTORTIONS)}")
    data = FLAGS.data or checkpoint.run_dataset(FLAGS.checkpoint)
    if not manifest.exists(data):
        raise UserError(f"{data} is not a prepared dataset; prepare it with avts-prepare")
    found = manifest.Manifest.read(data)
    description = checkpoint.run_description(FLAGS.checkpoint)
    window_s = description.clip_spec.window_seconds(description.fps)
    queries = found.records(FLAGS.query_split)
    if not queries:
        raise UserError(f"no videos in split {FLAGS.query_split!r} of {data}; give --query_split "
                        f"one of: {', '.join(found.split_names) or 'none'}, or prepare media with "
                        f"a held-out split (avts-prepare --test_fraction)")
    query_s = fingerprint.shortest_query_s(window_s, description.fps)
    originals = _usable(queries, query_s, "query")
    distractors = fingerprint.distinct_distractors(
        originals, _usable(found.records(FLAGS.distractor_split), window_s, "distractor"))
    if not originals:
        raise UserError(f"no video with sound in split {FLAGS.query_split!r} of {data} is long "
                        f"enough to query with ({query_s:.2f} s: one clip, also 10% faster); "
                        "give longer videos with an audio track")
    missing = [str(p) for p in [*originals, *distractors] if not p.is_file()]
    if missing:
        raise UserError(f"{len(missing)} source file(s) of {data} are gone (e.g. {missing[0]}); "
                        "fingerprinting distorts the source files, so keep them")
    video = checkpoint.load_tower(FLAGS.checkpoint, "video")
    audio = checkpoint.load_tower(FLAGS.checkpoint, "audio")
    towers = {"pretrained": (video, audio)}
    if FLAGS.random_init:
        keras.utils.set_random_seed(0)
        towers["random init"] = (checkpoint.fresh_copy(video), checkpoint.fresh_copy(audio))
    with tempfile.TemporaryDirectory(prefix="avts_fingerprint_") as scratch:
        work = Path(FLAGS.work_dir or scratch)
        results = fingerprint.evaluate(towers, description, originals, distractors, work,
                                       distortions, FLAGS.num_clips, FLAGS.seed,
                                       fusion=FLAGS.fusion)
    other = "zmax" if FLAGS.fusion == "concat" else "concat"
    rows = [[name, d, f"{v['top1']:.3f}", f"{v['mAP']:.3f}", f"{v['video_top1']:.3f}",
             f"{v['audio_top1']:.3f}", f"{v[other + '_top1']:.3f}"]
            for name, per in results.items() for d, v in per.items()]
    print(f"{len(originals)} queries per distortion, database of {len(originals)} originals + "
          f"{len(distractors)} distractors")
    print(report.table(["towers", "distortion", "top-1", "mAP", "top-1 video only",
                        "top-1 audio only", f"top-1 {other}"], rows))
    if FLAGS.output_json:
        from avts_tf.evaluation import plots

        report.write_json(FLAGS.output_json, results)
        png = plots.save_next_to(FLAGS.output_json, "fingerprinting: top-1 per distortion",
                                 lambda ax: plots.grouped_bars(ax, {
                                     name: {d: v["top1"] for d, v in per.items()}
                                     for name, per in results.items()}, "top-1 accuracy"))
        print(f"wrote {FLAGS.output_json}" + (f" and {png}" if png else ""))
    mine = results["pretrained"].values()
    print(f"fingerprint: top1={np.mean([v['top1'] for v in mine]):.3f} "
          f"mAP={np.mean([v['mAP'] for v in mine]):.3f}")
    return 0


def _usable(entries, seconds: float, role: str) -> list:
    """Source files of the entries with video and sound lasting ``seconds`` or more.

    The others are named in a warning (a fingerprint is made of both modalities). An entry
    without a recorded duration (an old manifest) is kept.
    """
    from pathlib import Path

    from absl import logging

    kept, short, silent = [], [], []
    for entry in entries:
        if entry.duration and not (entry.num_frames and entry.num_samples):
            silent.append(entry)
        else:
            (short if 0 < entry.duration < seconds else kept).append(entry)
    if short:
        logging.warning("%d %s video(s) shorter than %.2f s left out (e.g. %s)", len(short),
                        role, seconds, short[0].path)
    if silent:
        logging.warning("%d %s file(s) without video or sound left out (e.g. %s)", len(silent),
                        role, silent[0].path)
    return [Path(e.path) for e in kept]


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
