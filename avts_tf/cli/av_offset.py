"""Audio-video offset of media files (``avts-av-offset``, ``python tools/av_offset.py``).

    avts-av-offset VIDEO_OR_FOLDER [...] --checkpoint runs/offset_quickstart
        [--max_offset_s 1.0] [--plot offsets.png] [--output_json offsets.json]

A folder stands for the media files under it (by extension, links followed once).

Slides each file's audio against its video clips with a run's sync towers and averages
over the file (``avts_tf.evaluation.offset``). Prints ``offset_s: +0.xxx (confidence c)``
last for one file (positive: the audio lags the video); for several, a table, then one
``error:`` line per file that could not be measured (exit 1 when any). Train sync
towers for it with ``avts-train --gin_file=offset_quickstart``.
"""

from __future__ import annotations

import sys

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

shared.define_run("A sync training run's model_dir.")
flags.DEFINE_float("max_offset_s", 1.0, "Largest offset tried either way, in seconds.",
                   lower_bound=0.0)
flags.DEFINE_float("step_s", None, "Offset grid step (default: the run's log-mel hop).",
                   lower_bound=0.001)
flags.DEFINE_integer("num_clips", 16, "Video clips averaged per file.", lower_bound=1)
flags.DEFINE_string("plot", None, "Draw cost against offset into this PNG.")
shared.define_output_json("Write the estimates here.")
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> int:
    paths = argv[1:]
    if not paths:
        app.fail("no media file given; name one or more files: avts-av-offset VIDEO "
                 "--checkpoint RUN")
    from pathlib import Path

    from avts_tf.data.ingestion import sources
    from avts_tf.errors import UserError
    from avts_tf.evaluation import checkpoint, offset, report, sync

    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UserError(f"no such file: {', '.join(missing)}; give existing media files")
    folders = [p for p in paths if Path(p).is_dir()]
    paths = [str(f) for p in paths for f in (sources.walk_media(p) if Path(p).is_dir() else [p])]
    if not paths:
        raise UserError(f"no media file under {', '.join(folders)}; give media files or "
                        "folders holding them")
    model, _ = sync.sync_model(FLAGS.checkpoint, ("easy",))
    description = checkpoint.run_description(FLAGS.checkpoint)
    estimates, failed = [], []
    for path in paths:
        try:
            estimates.append(offset.estimate_offset(
                model, description, path, max_offset_s=FLAGS.max_offset_s,
                step_s=FLAGS.step_s, num_clips=FLAGS.num_clips))
        except UserError as err:
            if len(paths) == 1:
                raise
            failed.append((path, str(err)))
    if FLAGS.plot and estimates:
        offset.plot(estimates, FLAGS.plot)
    if FLAGS.output_json:
        report.write_json(FLAGS.output_json, {
            "estimates": [{"path": e.path, "offset_s": e.offset_s, "confidence": e.confidence,
                           "clips": e.clips} for e in estimates],
            "failed": [{"path": p, "error": m} for p, m in failed],
        })
    if len(paths) > 1:
        rows = [[e.path, f"{e.offset_s:+.3f}", f"{e.confidence:.1f}", e.clips]
                for e in estimates]
        rows += [[p, "failed", "-", 0] for p, _ in failed]
        print(report.table(["file", "offset_s", "confidence", "clips"], rows))
        for _, message in failed:  # One line per file that failed, after the table.
            print(f"error: {message}", file=sys.stderr)
        return 1 if failed else 0
    (estimate,) = estimates
    print(f"offset_s: {estimate.offset_s:+.3f} (confidence {estimate.confidence:.1f})")
    return 0


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
