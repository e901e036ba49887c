"""Robust video fingerprinting: ``python tools/eval_fingerprint.py --checkpoint RUN``.

A thin wrapper around ``avts-eval-fingerprint`` (:mod:`avts_tf.cli.eval_fingerprint`).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avts_tf.cli.eval_fingerprint import main  # noqa: E402

if __name__ == "__main__":
    main()
