"""Ingest media files into TFRecord shards and a manifest.

    python tools/prepare_data.py --input DIR_OR_CSV --output OUT \
        [--fps 8 --short_side 40 --sample_rate 16000 --workers 2 --num_shards N]

Re-run the same command to resume an interrupted run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run from a checkout.
from avts_tf.data.ingestion import prepare, sources  # noqa: E402
from avts_tf.data.manifest import DEFAULTS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "Folder of media (labels = sub-folder names), CSV with "
                    "header path,label[,split], or a dataset root / list in a --layout.")
flags.DEFINE_string("output", None, "Output folder for shards and manifest.json.")
flags.DEFINE_enum("layout", DEFAULTS.layout, list(sources.LAYOUTS), "Input layout; auto guesses "
                  "(folder, csv, esc50, ucf101, hmdb51, fsdd, youtube; dcase2014 must be named).")
flags.DEFINE_integer("fold", DEFAULTS.fold, "Official split for ucf101/hmdb51/dcase2014.",
                     lower_bound=1)
flags.DEFINE_string("media_dir", None, "youtube layout: folder searched for local files "
                    "(default: the list's folder).")
flags.DEFINE_float("fps", DEFAULTS.fps, "Frame rate of the stored frames.")
flags.DEFINE_integer("short_side", DEFAULTS.short_side,
                     "Short side of the stored frames, in pixels.")
flags.DEFINE_integer("sample_rate", DEFAULTS.sample_rate, "Audio rate in Hz (mono, 16-bit).")
flags.DEFINE_integer("jpeg_quality", DEFAULTS.jpeg_quality, "JPEG quality of the frames.",
                     lower_bound=1, upper_bound=100)
flags.DEFINE_integer("num_shards", DEFAULTS.num_shards,
                     f"Shards per split (default: one per {prepare.FILES_PER_SHARD} files).",
                     lower_bound=1)
flags.DEFINE_integer("workers", 1, "Decoding processes.", lower_bound=1)
flags.DEFINE_integer("video_stream", None, "Index among each file's video streams "
                     "(default: the best one).", lower_bound=0)
flags.DEFINE_integer("audio_stream", None, "Index among each file's audio streams "
                     "(default: the best one).", lower_bound=0)
flags.DEFINE_bool("allow_missing_audio", False, "Keep files without audio (video only).")
flags.DEFINE_bool("allow_missing_video", None, "Keep files without video (audio only); "
                  "default: yes for audio datasets (esc50, dcase2014, fsdd), else no.")
flags.mark_flags_as_required(["input", "output"])


def main(argv: list[str]) -> int:
    del argv
    logging.use_absl_handler()
    try:
        manifest = prepare.prepare_dataset(
            FLAGS.input, FLAGS.output, layout=FLAGS.layout, fps=FLAGS.fps,
            short_side=FLAGS.short_side, sample_rate=FLAGS.sample_rate,
            jpeg_quality=FLAGS.jpeg_quality, num_shards=FLAGS.num_shards,
            workers=FLAGS.workers, video_stream=FLAGS.video_stream,
            audio_stream=FLAGS.audio_stream, require_audio=not FLAGS.allow_missing_audio,
            require_video=None if FLAGS.allow_missing_video is None
            else not FLAGS.allow_missing_video,
            fold=FLAGS.fold, media_dir=FLAGS.media_dir, progress=True,
        )
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"prepare_data: error: {err}", file=sys.stderr)
        return 2
    print(f"prepare_data: wrote {len(manifest.written)} records, skipped "
          f"{len(manifest.skipped)} files; manifest at {FLAGS.output}/manifest.json")
    return 0


if __name__ == "__main__":
    app.run(main)
