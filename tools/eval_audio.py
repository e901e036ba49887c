"""Linear SVM on frozen audio features (and an MFCC baseline) (``avts-eval-audio``).

``python tools/eval_audio.py --helpshort`` lists the flags. A thin wrapper around
:mod:`avts_tf.cli.eval_audio` (same flags), kept so the command works from a
checkout without installing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avts_tf.cli.eval_audio import main  # noqa: E402

if __name__ == "__main__":
    main()
