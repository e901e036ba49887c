"""Frozen features of a tower to .npz files (``avts-extract``).

``python tools/extract.py --helpshort`` lists the flags. A thin wrapper around
:mod:`avts_tf.cli.extract` (same flags), kept so the command works from a
checkout without installing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avts_tf.cli.extract import main  # noqa: E402

if __name__ == "__main__":
    main()
