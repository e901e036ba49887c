"""The curriculum ablation on the synthetic dataset (``avts-ablate``).

``python tools/ablate.py --helpshort`` lists the flags. A thin wrapper around
:mod:`avts_tf.cli.ablate` (same flags), kept so the command works from a
checkout without installing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avts_tf.cli.ablate import main  # noqa: E402

if __name__ == "__main__":
    main()
