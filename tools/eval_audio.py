"""Wrapper of ``avts-eval-audio`` (:mod:`avts_tf.cli.eval_audio`), for a checkout.

See that module for the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avts_tf.cli.eval_audio import main  # noqa: E402

if __name__ == "__main__":
    main()
