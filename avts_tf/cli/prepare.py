"""Ingest media files into TFRecord shards and a manifest (``avts-prepare``).

    avts-prepare --input DIR_OR_CSV --output OUT
        [--fps 8 --short_side 40 --sample_rate 16000 --workers 2 --num_shards N]

(or ``python tools/prepare_data.py`` from a checkout).

Every file under a folder is probed with PyAV (the extension does not matter): each one is
either written or listed in ``manifest.json`` as skipped with its reason (``not_media``,
``no_audio``, ``duplicate`` for a file reached again through a link or a byte-identical
copy of another, ``timeout`` past
``--decode_timeout``, ``crash`` for a file that kills the decoder even when decoded
alone). Links are followed, each folder and file once. A folder input gets a held-out
split ``test`` (``--test_fraction`` of each label, chosen by a hash of the path among
the files whose header passes, so a file to be skipped is not the one held out).

Mistakes end in one line ``error: <problem>; <fix>`` and exit code 2: bad settings (checked
before anything is written), an output that is a file, unwritable, or a non-empty folder
that is not a dataset of ours (``--overwrite``), a re-run with other settings (the
differing keys named), a list whose header is unknown or that names a file twice, and a
run that wrote nothing (naming ``--allow_missing_video`` / ``--allow_missing_audio``).

Re-run the same command to resume an interrupted run.

``--runner DirectRunner|FlinkRunner|SparkRunner|DataflowRunner`` runs the same ingestion
as an Apache Beam pipeline (``pip install 'avts_tf[beam]'``), with pipeline options in
``--beam_options``; the shards and manifest are the same as the local pool's
(docs/ingestion.md)::

    avts-prepare --input DIR --output OUT --runner DirectRunner \
        --beam_options="--direct_num_workers=2 --direct_running_mode=multi_processing"
"""

from __future__ import annotations

from absl import flags, logging

from avts_tf.cli import app
from avts_tf.cli import flags as shared
from avts_tf.data.ingestion import ingest, sources  # no TensorFlow yet: flags first
from avts_tf.data.manifest import DEFAULTS, FILES_PER_SHARD, IngestConfig
from avts_tf.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "input",
    None,
    "Folder of media (labels = sub-folder names; "
    "--test_fraction held out), one media file, CSV with header "
    "path,label[,split][,start,end] (relative paths from the CSV's folder), "
    "or a dataset root / list in a --layout.",
)
shared.define_output("Output folder for shards and manifest.json.", required=True)
flags.DEFINE_enum(
    "layout",
    DEFAULTS.layout,
    list(sources.LAYOUTS),
    "Input layout; auto guesses "
    "(folder, csv, esc50, ucf101, hmdb51, fsdd, youtube; dcase2014 must be named; "
    "a folder holding a dataset.csv of its media is read through it).",
)
flags.DEFINE_bool(
    "overwrite",
    False,
    "Write into a non-empty --output that is not a dataset "
    "of avts_tf (same-named files in it are replaced).",
)
flags.DEFINE_float(
    "test_fraction",
    sources.DEFAULT_TEST_FRACTION,
    "Folder input: share of each label's files held out as split 'test' "
    "(decided by a hash of the file's path; 0: none).",
    lower_bound=0.0,
    upper_bound=0.9,
)
flags.DEFINE_integer(
    "fold", DEFAULTS.fold, "Official split for ucf101/hmdb51/dcase2014.", lower_bound=1
)
flags.DEFINE_string(
    "media_dir",
    None,
    "youtube layout: folder searched for local files (default: the list's folder).",
)
flags.DEFINE_float("fps", DEFAULTS.fps, "Frame rate of the stored frames.", lower_bound=0.1)
flags.DEFINE_integer(
    "short_side", DEFAULTS.short_side, "Short side of the stored frames, in pixels.", lower_bound=8
)
flags.DEFINE_integer(
    "sample_rate",
    DEFAULTS.sample_rate,
    "Audio rate in Hz (mono, 16-bit).",
    lower_bound=1000,
    upper_bound=384000,
)
flags.DEFINE_integer(
    "jpeg_quality",
    DEFAULTS.jpeg_quality,
    "JPEG quality of the frames.",
    lower_bound=1,
    upper_bound=100,
)
flags.DEFINE_integer(
    "num_shards",
    DEFAULTS.num_shards,
    f"Shards per split (default: one per {FILES_PER_SHARD} files).",
    lower_bound=1,
)
flags.DEFINE_float(
    "max_record_s",
    DEFAULTS.max_record_s,
    "A file longer than this is "
    "stored as several records of at most this many seconds, overlapping by "
    "--record_overlap_s and sharing the file's video id (0: one record per "
    "file, whatever its length).",
    lower_bound=0.0,
)
flags.DEFINE_float(
    "record_overlap_s",
    DEFAULTS.record_overlap_s,
    "Seconds shared by "
    "consecutive records of one long file: clips up to this long can start "
    "anywhere in it.",
    lower_bound=0.0,
)
flags.DEFINE_integer("workers", 1, "Decoding processes.", lower_bound=1)
flags.DEFINE_integer(
    "video_stream",
    None,
    "Index among each file's video streams (default: the best one).",
    lower_bound=0,
)
flags.DEFINE_integer(
    "audio_stream",
    None,
    "Index among each file's audio streams (default: the best one).",
    lower_bound=0,
)
flags.DEFINE_float(
    "decode_timeout",
    600.0,
    "Seconds one file may take to decode; a file "
    "taking longer (a hung decoder) is skipped with its reason.",
    lower_bound=1.0,
)
flags.DEFINE_bool("allow_missing_audio", False, "Keep files without audio (video only).")
flags.DEFINE_bool(
    "allow_missing_video",
    None,
    "Keep files without video (audio only); "
    "default: yes for audio datasets (esc50, dcase2014, fsdd), else no.",
)
flags.DEFINE_string(
    "runner",
    "local",
    "Where to decode: local (a process pool of --workers) "
    "or an Apache Beam runner: DirectRunner, FlinkRunner, SparkRunner, "
    "DataflowRunner (docs/ingestion.md).",
)
flags.DEFINE_string(
    "beam_options",
    "",
    "Beam pipeline options for --runner, as one quoted "
    'string, e.g. "--direct_num_workers=2 --direct_running_mode=multi_processing'
    '" or "--flink_master=host:8081 --environment_type=LOOPBACK".',
)
flags.DEFINE_bool(
    "verify",
    False,
    "Check every shard of --output (CRCs, record counts, ids "
    "against manifest.json) and rebuild the bad ones from their source files "
    "with the dataset's own settings; --input is not needed.",
)


def _main(argv: list[str]) -> int:
    app.no_positional(argv)
    logging.use_absl_handler()
    config = IngestConfig(
        layout=FLAGS.layout,
        fps=FLAGS.fps,
        short_side=FLAGS.short_side,
        sample_rate=FLAGS.sample_rate,
        jpeg_quality=FLAGS.jpeg_quality,
        num_shards=FLAGS.num_shards,
        video_stream=FLAGS.video_stream,
        audio_stream=FLAGS.audio_stream,
        require_audio=not FLAGS.allow_missing_audio,
        require_video=None if FLAGS.allow_missing_video is None else not FLAGS.allow_missing_video,
        fold=FLAGS.fold,
        media_dir=FLAGS.media_dir,
        test_fraction=FLAGS.test_fraction or None,
        max_record_s=FLAGS.max_record_s or None,
        record_overlap_s=FLAGS.record_overlap_s,
    )
    outcome = ingest.prepare(
        FLAGS.input,
        FLAGS.output,
        config,
        workers=FLAGS.workers,
        runner=FLAGS.runner,
        beam_options=FLAGS.beam_options,
        verify=FLAGS.verify,
        overwrite=FLAGS.overwrite,
        decode_timeout=FLAGS.decode_timeout,
    )
    for line in outcome.lines:
        print(line)
    if outcome.error:
        raise UserError(outcome.error)
    return 0


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
