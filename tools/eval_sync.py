"""Wrapper of ``avts-eval-sync`` (:mod:`avts_tf.cli.eval_sync`), for a checkout.

See that module for the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avts_tf.cli.eval_sync import main  # noqa: E402

if __name__ == "__main__":
    main()
