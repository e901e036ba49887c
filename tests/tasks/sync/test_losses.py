import numpy as np
import pytest

from avts_tf.tasks.sync import losses


def test_contrastive_loss_matches_hand_computation():
    distance = np.array([0.2, 0.9, 0.3, 1.5], np.float32)
    in_sync = np.array([1, 1, 0, 0], np.float32)
    margin = 1.0
    # Positives: d^2. Negatives: max(margin - d, 0)^2.
    expected = [0.04, 0.81, 0.49, 0.0]
    got = losses.contrastive_loss(distance, in_sync, margin).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.mean() == pytest.approx(np.mean(expected))


def test_euclidean_distance_and_finite_gradient_at_zero():
    import tensorflow as tf

    a = tf.Variable([[3.0, 4.0], [1.0, 1.0]])
    b = tf.constant([[0.0, 0.0], [1.0, 1.0]])
    with tf.GradientTape() as tape:
        d = losses.euclidean_distance(a, b)
        total = tf.reduce_sum(d)
    np.testing.assert_allclose(d.numpy(), [5.0, 0.0], atol=1e-5)
    grad = tape.gradient(total, a).numpy()
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[0], [0.6, 0.8], rtol=1e-5)


def test_sync_cross_entropy():
    logits = np.array([0.0, 2.0], np.float32)
    got = losses.sync_cross_entropy(logits, np.array([1.0, 0.0], np.float32)).numpy()
    np.testing.assert_allclose(got, [np.log(2.0), np.log1p(np.exp(2.0))], rtol=1e-6)
