"""The PyTorch TSSL step of benchmarks/train_step.py computes ``TemporalContrastive``'s loss.

Same embeddings, head weights, labels and planted full queues: the loss, its gradients
with respect to the embeddings and the queues after the enqueue agree to 1e-4 relative,
so the benchmark's ratio compares the same work.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from avts_tf.tasks.temporal.ordering import order_labels

# torch imports triton (via torch._dynamo), whose LLVM clashes with the TensorFlow the
# conftest already loaded (segfault); these CPU tests do not need it.
sys.modules.setdefault("triton", None)
torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import train_step  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_tssl_loss_equals_the_task(seed):
    differences = train_step.check_tssl_peer(seed=seed)
    assert max(differences.values()) <= train_step.PEER_TOLERANCE, differences


def test_labels_cover_every_ordering_class():
    labels = train_step.tssl_labels(np.random.default_rng(0), 8)
    start, span = labels["view_start"], labels["view_span"]
    classes = order_labels(start[:, 0], span[:, 0], start[:, 1], span[:, 1]).numpy()
    assert set(classes.tolist()) == {0, 1, 2}
    mine = train_step.torch_order_labels(
        *(torch.from_numpy(x) for x in (start[:, 0], span[:, 0], start[:, 1], span[:, 1]))
    )
    assert np.array_equal(mine.numpy(), classes)
    assert set(labels["speed"].ravel().tolist()) <= {0, 1, 2}


def test_enqueue_matches_the_task():
    from avts_tf.tasks.temporal import contrastive

    rng = np.random.default_rng(0)
    queue = rng.standard_normal((5, 3)).astype(np.float32)
    queue_ids = np.arange(5, dtype=np.int64)
    keys = rng.standard_normal((3, 3)).astype(np.float32)
    ids = np.array([7, 8, 9], np.int64)
    expected = contrastive.enqueue(
        tf.constant(queue),
        tf.constant(queue_ids),
        tf.constant(3),
        tf.constant(keys),
        tf.constant(ids),
    )
    queues = {"video": (torch.from_numpy(queue), torch.from_numpy(queue_ids), torch.tensor(3))}
    train_step.torch_enqueue(queues, {"video": torch.from_numpy(keys)}, torch.from_numpy(ids))
    for mine, theirs in zip(queues["video"], expected, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
