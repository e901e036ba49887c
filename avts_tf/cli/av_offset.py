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
flags.DEFINE_float(
    "max_offset_s", 1.0, "Largest offset tried either way, in seconds.", lower_bound=0.0
)
flags.DEFINE_float(
    "step_s", None, "Offset grid step (default: the run's log-mel hop).", lower_bound=0.001
)
flags.DEFINE_integer("num_clips", 16, "Video clips averaged per file.", lower_bound=1)
flags.DEFINE_string("plot", None, "Draw cost against offset into this PNG.")
shared.define_output_json("Write the estimates here.")
FLAGS = flags.FLAGS


def _main(argv: list[str]) -> int:
    paths = argv[1:]
    if not paths:
        app.fail(
            "no media file given; name one or more files: avts-av-offset VIDEO --checkpoint RUN"
        )
    from avts_tf.evaluation import offset, report

    found = offset.estimate_files(
        FLAGS.checkpoint, paths, FLAGS.max_offset_s, FLAGS.step_s, FLAGS.num_clips
    )
    if FLAGS.plot and found.estimates:
        offset.plot(found.estimates, FLAGS.plot)
    if FLAGS.output_json:
        report.write_json(FLAGS.output_json, offset.as_json(found))
    if len(found.estimates) + len(found.failed) > 1:
        print(offset.table(found))
        for _, message in found.failed:  # One line per file that failed, after the table.
            print(f"error: {message}", file=sys.stderr)
        return 1 if found.failed else 0
    (estimate,) = found.estimates
    print(f"offset_s: {estimate.offset_s:+.3f} (confidence {estimate.confidence:.1f})")
    return 0


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
