"""Audio-video offset of media files: ``python tools/av_offset.py VIDEO --checkpoint RUN``.

A thin wrapper around ``avts-av-offset`` (:mod:`avts_tf.cli.av_offset`).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avts_tf.cli.av_offset import main  # noqa: E402

if __name__ == "__main__":
    main()
