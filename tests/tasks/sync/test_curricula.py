import numpy as np
import pytest
import tensorflow as tf

from avts_tf.tasks.sync.curricula import ConstantMixture, LinearRamp, StepSwitch, as_mixture


def test_as_mixture_normalises_and_validates():
    assert as_mixture({"easy": 3, "hard": 1}) == [0.75, 0.25, 0.0]
    assert as_mixture([1, 1, 2]) == [0.25, 0.25, 0.5]
    with pytest.raises(ValueError, match="valid kinds: easy, hard, super_hard"):
        as_mixture({"medium": 1})
    with pytest.raises(ValueError, match="not all zero"):
        as_mixture([0, 0, 0])


def test_constant():
    schedule = ConstantMixture({"easy": 0.75, "hard": 0.25})
    np.testing.assert_allclose(schedule.mixture(tf.constant(10**6)), [0.75, 0.25, 0.0])
    assert schedule.kinds() == {"easy", "hard"}


def test_step_switch_is_the_papers_curriculum():
    steps_per_epoch = 10
    schedule = StepSwitch([50 * steps_per_epoch], [{"easy": 1}, {"easy": 0.75, "hard": 0.25}])
    np.testing.assert_allclose(schedule.mixture(tf.constant(0)), [1, 0, 0])
    np.testing.assert_allclose(schedule.mixture(tf.constant(499)), [1, 0, 0])
    np.testing.assert_allclose(schedule.mixture(tf.constant(500)), [0.75, 0.25, 0])
    assert int(schedule.stage(tf.constant(499))) == 0
    assert int(schedule.stage(tf.constant(500))) == 1
    with pytest.raises(ValueError, match="len\\(boundaries\\) \\+ 1"):
        StepSwitch([5], [{"easy": 1}])


def test_linear_ramp():
    schedule = LinearRamp(10, 20, start={"easy": 1}, end={"hard": 1})
    np.testing.assert_allclose(schedule.mixture(tf.constant(0)), [1, 0, 0])
    np.testing.assert_allclose(schedule.mixture(tf.constant(15)), [0.5, 0.5, 0])
    np.testing.assert_allclose(schedule.mixture(tf.constant(25)), [0, 1, 0])
