"""Training curves of a run as a PNG: ``python tools/plot_run.py --model_dir RUN``.

A thin wrapper around ``avts-plot-run`` (:mod:`avts_tf.cli.plot_run`).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avts_tf.cli.plot_run import main  # noqa: E402

if __name__ == "__main__":
    main()
