"""Train a task from a gin recipe.

    python tools/train.py --gin_file=gin/quickstart.gin [--gin_param="train.run.train_steps=100"]
        [--model_dir=runs/quickstart]

Re-running the same command resumes from the newest checkpoint in ``--model_dir``.
With ``TF_CONFIG`` set, each process is one worker of ``MultiWorkerMirroredStrategy``
(see docs/distributed.md); ``--gin_param=train.make_strategy.cpu_replicas=2`` runs
``MirroredStrategy`` over two logical CPU devices.

The last line printed is ``<headline>: 0.xxx``, the task's headline metric on the
held-out videos (``Task.headline``); all metrics go to ``<model_dir>/eval.json``.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN kernels: 2x faster convs on AVX2 CPUs (benchmarks/towers.py).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from absl import app, flags  # noqa: E402

flags.DEFINE_multi_string("gin_file", [], "Gin files, applied in order.")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings, e.g. 'train.run.train_steps=100'.")
flags.DEFINE_string("model_dir", None, "Output folder (default: runs/<first gin file's name>).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from avts_tf import config, distribute, train
    from avts_tf.evaluation.errors import BadInput

    if not FLAGS.gin_file:
        raise app.UsageError("Give at least one --gin_file, e.g. --gin_file=gin/quickstart.gin")
    config.parse_gin(FLAGS.gin_file, FLAGS.gin_param)
    # Before anything else touches TensorFlow: logical CPUs and the collectives of
    # MultiWorkerMirroredStrategy are fixed when it initialises.
    distribute.make_strategy()
    model_dir = FLAGS.model_dir or os.path.join("runs", Path(FLAGS.gin_file[0]).stem)
    try:
        results = train.run(model_dir=model_dir)
    except BadInput as err:  # Overlapping splits, ...: one line, no traceback.
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(f"eval: {dict(results)}")
    headline = results.get(results.headline)
    print(f"{results.headline}: " + ("undefined" if headline is None else f"{headline:.3f}"))


if __name__ == "__main__":
    app.run(main)
