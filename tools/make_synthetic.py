"""Generate the synthetic audio-visual dataset (``avts-make-synthetic``).

``python tools/make_synthetic.py --helpshort`` lists the flags. A thin wrapper around
:mod:`avts_tf.cli.make_synthetic` (same flags), kept so the command works from a
checkout without installing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avts_tf.cli.make_synthetic import main  # noqa: E402

if __name__ == "__main__":
    main()
