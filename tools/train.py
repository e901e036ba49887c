"""Train a task from a gin recipe: ``python tools/train.py --gin_file=gin/quickstart.gin``.

A thin wrapper around ``avts-train`` (:mod:`avts_tf.cli.train`), kept so the command works
from a checkout without installing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avts_tf.cli.train import main  # noqa: E402

if __name__ == "__main__":
    main()
