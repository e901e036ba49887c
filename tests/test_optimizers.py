"""``DecoupledAdamW`` updates weights as the authors' TF1 AdamW did, and survives saving,
checkpoints, ``MirroredStrategy`` and ``train.run``."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from avts_tf.optimizers import DecoupledAdamW

# The source's lr, betas and cosine floor; a decay and schedule length large enough that a
# decay not following the schedule would show.
LR, DECAY, ALPHA, STEPS = 3e-4, 1e-2, 1e-3, 4
BETA_1, BETA_2, EPSILON = 0.9, 0.99, 1e-8


def small_model() -> keras.Model:
    """A Dense kernel (3, 2) and bias, and a BatchNorm gamma and beta, at known values."""
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(2, name="dense")
    bn = keras.layers.BatchNormalization(name="bn")
    model = keras.Model(inputs, bn(dense(inputs)))
    dense.kernel.assign(np.arange(1, 7, dtype="float32").reshape(3, 2) / 10)
    dense.bias.assign([0.5, -0.5])
    bn.gamma.assign([2.0, 3.0])
    bn.beta.assign([0.25, -0.25])
    return model


def gradients(step: int, model: keras.Model) -> list[np.ndarray]:
    rng = np.random.default_rng(step)
    return [rng.normal(size=v.shape).astype("float32") for v in model.trainable_variables]


def cosine(step: int) -> float:
    """``tf.compat.v1.train.cosine_decay(1., step, STEPS, alpha=ALPHA)``."""
    return (1 - ALPHA) * 0.5 * (1 + math.cos(math.pi * min(step, STEPS) / STEPS)) + ALPHA


def source_rule(weights, grads_by_step, decayed):
    """The source's update, by hand: ``tf.contrib.opt.AdamWOptimizer(wd * c(t),
    learning_rate=lr * c(t), beta1=0.9, beta2=0.99)`` with ``decay_var_list``.

    Per step t (from 0): ``w -= wd * c(t) * w`` for decayed weights, then TF1 Adam:
    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``w -= lr c(t) sqrt(1 - b2^(t+1)) / (1 - b1^(t+1)) * m / (sqrt(v) + eps)``.
    """
    w = [np.array(x, dtype="float64") for x in weights]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    for t, grads in enumerate(grads_by_step):
        c = cosine(t)
        step = LR * c * math.sqrt(1 - BETA_2 ** (t + 1)) / (1 - BETA_1 ** (t + 1))
        for i, g in enumerate(grads):
            if decayed[i]:
                w[i] -= DECAY * c * w[i]
            m[i] = BETA_1 * m[i] + (1 - BETA_1) * g
            v[i] = BETA_2 * v[i] + (1 - BETA_2) * g * g
            w[i] -= step * m[i] / (np.sqrt(v[i]) + EPSILON)
    return w


def make_optimizer() -> DecoupledAdamW:
    schedule = keras.optimizers.schedules.CosineDecay(LR, STEPS, alpha=ALPHA)
    return DecoupledAdamW(
        learning_rate=schedule,
        decoupled_weight_decay=DECAY,
        beta_1=BETA_1,
        beta_2=BETA_2,
        epsilon=EPSILON,
    )


NAMES = ["dense/kernel", "dense/bias", "bn/gamma", "bn/beta"]
DECAYED = [True, False, False, False]  # the source decays neither BN parameters nor biases


def test_three_updates_equal_the_source_rule_by_hand():
    model = small_model()
    assert [v.path for v in model.trainable_variables] == NAMES
    start = [v.numpy() for v in model.trainable_variables]
    opt = make_optimizer()
    grads_by_step = [gradients(t, model) for t in range(3)]
    for grads in grads_by_step:
        opt.apply(grads, model.trainable_variables)
    expected = source_rule(start, grads_by_step, DECAYED)
    for variable, want in zip(model.trainable_variables, expected, strict=True):
        np.testing.assert_allclose(
            variable.numpy(), want, rtol=1e-6, atol=1e-8, err_msg=variable.path
        )


def test_the_decay_is_the_sources_strength_not_keras_lr_times_it():
    """Zero gradients leave Adam's step at 0: only the decay moves a weight."""
    for opt, expected in (
        (make_optimizer(), 1 - DECAY),
        (keras.optimizers.AdamW(LR, weight_decay=DECAY), 1 - LR * DECAY),
    ):
        model = small_model()
        before = [v.numpy() for v in model.trainable_variables]
        opt.apply([np.zeros_like(w) for w in before], model.trainable_variables)
        np.testing.assert_allclose(
            model.trainable_variables[0].numpy(), before[0] * expected, rtol=1e-7
        )


def test_no_decay_matches_the_last_path_component_only():
    opt = DecoupledAdamW(decoupled_weight_decay=0.5, learning_rate=0.1)
    inputs = keras.Input((2,))
    layer = keras.layers.Dense(2, name="bias_head")
    keras.Model(inputs, layer(inputs))
    before = layer.kernel.numpy()
    opt.apply([np.zeros((2, 2), "float32"), np.zeros(2, "float32")], [layer.kernel, layer.bias])
    np.testing.assert_allclose(layer.kernel.numpy(), before * 0.5, rtol=1e-6)
    assert DecoupledAdamW(no_decay="bias").no_decay == ("bias",)
    with pytest.raises(ValueError, match="decoupled_weight_decay"):
        DecoupledAdamW(weight_decay=1e-4)
    with pytest.raises(ValueError, match="positive learning rate"):
        DecoupledAdamW(
            learning_rate=keras.optimizers.schedules.CosineDecay(
                0.0, 10, warmup_target=1e-3, warmup_steps=5
            )
        )


def test_config_round_trip_and_keras_saving(tmp_path):
    opt = make_optimizer()
    config = opt.get_config()
    assert config["decoupled_weight_decay"] == DECAY and "weight_decay" not in config
    assert config["beta_2"] == BETA_2 and config["no_decay"] == ["gamma", "beta", "bias"]
    model = small_model()
    model.compile(optimizer=opt, loss="mse")
    opt.build(model.trainable_variables)  # its moments stay 0 below
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, DecoupledAdamW)
    assert loaded.optimizer.get_config() == config
    np.testing.assert_allclose(float(loaded.optimizer.weight_decay), DECAY / LR)
    # The reloaded optimizer still leaves the bias and BN parameters undecayed (zero
    # gradients and moments: only the decay moves a weight).
    before = [v.numpy() for v in loaded.trainable_variables]
    loaded.optimizer.apply([np.zeros_like(w) for w in before], loaded.trainable_variables)
    after = [v.numpy() for v in loaded.trainable_variables]
    for name, b, a, decayed in zip(NAMES, before, after, DECAYED, strict=True):
        assert (not np.array_equal(a, b)) == decayed, name


def test_checkpoint_restores_step_and_moments(tmp_path):
    model, opt = small_model(), make_optimizer()
    opt.apply(gradients(0, model), model.trainable_variables)
    path = tf.train.Checkpoint(model=model, optimizer=opt).save(str(tmp_path / "ckpt"))
    model2, opt2 = small_model(), make_optimizer()
    opt2.build(model2.trainable_variables)
    tf.train.Checkpoint(model=model2, optimizer=opt2).restore(path).assert_consumed()
    assert int(opt2.iterations) == 1
    for a, b in zip(opt.variables, opt2.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    grads = gradients(1, model)
    opt.apply(grads, model.trainable_variables)
    opt2.apply(grads, model2.trainable_variables)
    for a, b in zip(model.trainable_variables, model2.trainable_variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_under_mirrored_strategy_an_update_equals_the_source_rule():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model, opt = small_model(), make_optimizer()
        opt.build(model.trainable_variables)
    start = [v.numpy() for v in model.trainable_variables]
    grads = gradients(0, model)

    @tf.function
    def step():
        def replica_step():
            opt.apply_gradients(
                zip([tf.constant(g) for g in grads], model.trainable_variables, strict=True)
            )

        strategy.run(replica_step)

    step()
    expected = source_rule(start, [grads], DECAYED)
    for variable, want in zip(model.trainable_variables, expected, strict=True):
        np.testing.assert_allclose(
            variable.numpy(), want, rtol=1e-6, atol=1e-8, err_msg=variable.path
        )


def test_trains_through_train_run_with_colour_augmented_clips(tmp_path, tiny_prepared):
    """``train.run`` compiles it into ``AVTSModel`` under its strategy, trains and
    checkpoints; the same call again finds the run finished with the same results."""
    import dataclasses
    import functools

    import tiny

    optimizer = functools.partial(
        DecoupledAdamW, learning_rate=1e-3, decoupled_weight_decay=1e-2, beta_2=BETA_2
    )
    spec = dataclasses.replace(tiny.SPEC, brightness=0.1, saturation=0.5, grayscale=0.2)
    first = tiny.train_tiny(
        tmp_path, tiny_prepared, optimizer=optimizer, clip_spec=spec, checkpoint_every_steps=3
    )
    assert all(np.isfinite(v) for v in first.values() if isinstance(v, float))
    again = tiny.train_tiny(
        tmp_path, tiny_prepared, optimizer=optimizer, clip_spec=spec, checkpoint_every_steps=3
    )
    assert again == first


REPLICAS_SCRIPT = """
import json
import numpy as np
from avts_tf.distribute import make_strategy
strategy = make_strategy(cpu_replicas=2)  # before TensorFlow initialises
import tensorflow as tf
from test_optimizers import DECAYED, gradients, make_optimizer, small_model, source_rule

with strategy.scope():
    model, opt = small_model(), make_optimizer()
    opt.build(model.trainable_variables)
start = [v.numpy() for v in model.trainable_variables]
grads = gradients(0, model)

def parts(context):  # unequal shares, summed back to grads by Keras' all-reduce
    share = 0.25 if context.replica_id_in_sync_group == 0 else 0.75
    return [tf.constant(g * share) for g in grads]

@tf.function
def step(per_replica):
    def replica_step(mine):
        opt.apply_gradients(zip(mine, model.trainable_variables, strict=True))
    strategy.run(replica_step, args=(per_replica,))

step(strategy.experimental_distribute_values_from_function(parts))
expected = source_rule(start, [grads], DECAYED)
diff = max(float(np.abs(v.numpy() - w).max())
           for v, w in zip(model.trainable_variables, expected, strict=True))
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "max_diff": diff}))
"""


def test_two_replicas_apply_the_source_rule_once():
    """Under 2 logical CPU replicas one update equals the source rule: the decay is applied
    once, not once per replica."""
    import json
    import subprocess
    import sys

    from checks import REPO_ROOT, subprocess_env

    result = subprocess.run(
        [sys.executable, "-c", REPLICAS_SCRIPT],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert out["max_diff"] < 1e-6
