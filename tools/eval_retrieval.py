"""Retrieval with a run's frozen towers: ``python tools/eval_retrieval.py --checkpoint RUN``.

A thin wrapper around ``avts-eval-retrieval`` (:mod:`avts_tf.cli.eval_retrieval`).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avts_tf.cli.eval_retrieval import main  # noqa: E402

if __name__ == "__main__":
    main()
