"""Distributed training on CPU: 2 logical replicas equal one device; two workers agree.

Logical devices and collectives are fixed when TensorFlow initialises, so each check runs
in a fresh process. Run as a script, this file is the two-replica check:
``python tests/test_distributed.py replicas``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import workers

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/, as a script too
from replicas import max_diff, run_check, separate_halves_step, strategies  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 8


def _batch(seed: int = 0, valid_hard=None) -> dict:
    """A global batch with hard negatives and pipeline-cut easy negatives."""
    import numpy as np
    import tensorflow as tf

    from avts_tf.tasks.sync.objectives import add_easy_negatives

    rng = np.random.default_rng(seed)
    batch = {
        "video": rng.random((GLOBAL_BATCH, 4, 32, 32, 3), dtype=np.float32),
        "audio": rng.random((GLOBAL_BATCH, 24, 16, 1), dtype=np.float32),
        "audio_hard": rng.random((GLOBAL_BATCH, 24, 16, 1), dtype=np.float32),
        "valid_hard": np.ones(GLOBAL_BATCH, bool) if valid_hard is None else valid_hard,
        "video_id": np.array([0, 1, 2, 3, 4, 5, 6, 6], np.int64),  # 6 -> 7: no easy pair
        "audio_start": np.zeros(GLOBAL_BATCH, np.int64),
    }
    return {
        k: v.numpy()
        for k, v in add_easy_negatives({k: tf.constant(v) for k, v in batch.items()}).items()
    }


def replicas_main() -> None:
    """Prints, as JSON, max differences between one device and 2 logical CPU replicas.

    * ``sync_bn``: towers with synchronized BatchNorm and a mixed easy/hard curriculum:
      2 replicas must equal one device (gradients, weights and BN statistics).
    * ``replica_bn``: the towers users train (mc3_18 and avts_audio_vgg, fused per-replica
      BatchNorm): 2 replicas must equal one device that computes each half of the batch
      with its own statistics, sums the gradients and averages the BN state.
    * ``xla``: the same with XLA per replica, against the same reference.
    * ``overflow``: mixed_float16, a batch that overflows on replica 1 only.
    * ``eval``: evaluation of 5 examples in batches of 4 (the last: 1 example, so replica
      1 gets none) against one device.
    Each for float32 and mixed_bfloat16 where it applies.
    """
    single_device, mirrored = strategies()
    import keras
    import numpy as np
    import tensorflow as tf
    from tiny import distributed_towers

    import avts_tf.backbones  # noqa: F401  (registers the towers)
    from avts_tf.models import AVTSModel
    from avts_tf.tasks.sync.curricula import ConstantMixture
    from avts_tf.tasks.sync.objectives import ContrastiveSync, add_easy_negatives

    def build(strategy, kind, mixture, jit=False, loss_scale=False, lr=0.5):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            objective = ContrastiveSync(
                curriculum=ConstantMixture(mixture), eval_kinds=("easy", "hard")
            )
            model = AVTSModel(*distributed_towers(kind), objective)
            optimizer = keras.optimizers.SGD(lr, momentum=0.9)
            if loss_scale:
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            model.compile(optimizer=optimizer, jit_compile=jit)
            optimizer.build(model.trainable_variables)
        return model

    def fit(model, batch, steps=2):
        dataset = tf.data.Dataset.from_tensors(batch).repeat()
        return model.fit(dataset, steps_per_epoch=steps, verbose=0).history

    def state(model):
        return [
            v.numpy()
            for v in model.video_tower.non_trainable_variables
            + model.audio_tower.non_trainable_variables
        ]

    def halves_reference(model, batch, steps=2):
        for _ in range(steps):
            separate_halves_step(model, batch)

    def sync_bn_check(batch, mix):
        one = build(single_device, "sync_bn", mix, lr=0.05)
        two = build(mirrored, "sync_bn", mix, lr=0.05)
        initial = max_diff(one.get_weights(), two.get_weights())
        logs_1, logs_2 = fit(one, batch), fit(two, batch)
        untrained = build(single_device, "sync_bn", mix).get_weights()
        return {
            "initial": initial,
            "weights": max_diff(one.get_weights(), two.get_weights()),
            "bn_state": max_diff(state(one), state(two)),
            "moved": max_diff(one.get_weights(), untrained),
            "logged_metrics": max(
                abs(logs_1[k][-1] - logs_2[k][-1])
                for k in logs_1
                if k.startswith(("sync_accuracy", "negatives", "pos_", "neg_"))
            ),
            "logged_loss": abs(logs_1["loss"][-1] - logs_2["loss"][-1]),
            "logged_accuracy": abs(logs_1["sync_accuracy"][-1] - logs_2["sync_accuracy"][-1]),
        }

    results = {}
    for precision in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(precision)
        if precision == "float32":  # see test_two_replicas_with_synchronized_batch_norm...
            results[f"sync_bn/{precision}"] = sync_bn_check(_batch(), {"easy": 0.5, "hard": 0.5})
        # Hard negatives where the record holds one, pipeline-cut easy ones elsewhere.
        batch = _batch(valid_hard=np.array([1, 0, 1, 1, 1, 1, 0, 1], bool))
        hard = {"hard": 1.0}
        reference = build(single_device, "replica_bn", hard)
        halves_reference(reference, batch)
        two = build(mirrored, "replica_bn", hard)
        fit(two, batch)
        scale = max(float(np.max(np.abs(w))) for w in reference.get_weights())
        results[f"replica_bn/{precision}"] = {
            "weights": max_diff(reference.get_weights(), two.get_weights()),
            "bn_state": max_diff(state(reference), state(two)),
            "scale": scale,
        }
        if precision == "float32":  # XLA rounds bfloat16 differently (fusions): f32 only
            two_xla = build(mirrored, "replica_bn", hard, jit=True)
            assert two_xla.replica_jit_compile
            fit(two_xla, batch)
            results[f"replica_bn/{precision}"]["xla_weights"] = max_diff(
                reference.get_weights(), two_xla.get_weights()
            )

    keras.mixed_precision.set_global_policy("mixed_float16")
    batch = _batch()
    batch["video"][GLOBAL_BATCH // 2 :] = 6e4  # finite in float16; replica 1's convs overflow
    one = build(single_device, "replica_bn", {"hard": 1.0}, loss_scale=True)
    two = build(mirrored, "replica_bn", {"hard": 1.0}, loss_scale=True)
    before = one.get_weights()
    logs_1, logs_2 = fit(one, batch, steps=1), fit(two, batch, steps=1)
    half = {k: v[: GLOBAL_BATCH // 2] for k, v in batch.items()}
    probe = build(single_device, "replica_bn", {"hard": 1.0}, loss_scale=True)
    _, _, g0, _, _ = probe._loss_and_gradients(
        {k: tf.constant(v) for k, v in half.items()}, tf.constant(GLOBAL_BATCH), stateless=True
    )
    results["overflow"] = {
        "replica0_alone_finite": bool(all(np.all(np.isfinite(g)) for g in g0)),
        "logged_loss": [logs_1["loss"][-1], logs_2["loss"][-1]],
        "weights_finite": bool(all(np.all(np.isfinite(w)) for w in two.get_weights())),
        "weights_vs_single": max_diff(one.get_weights(), two.get_weights()),
        "weights_moved": max_diff(before, two.get_weights()),
        "scale_single": float(one.optimizer.dynamic_scale.numpy()),
        "scale_two": float(two.optimizer.dynamic_scale.numpy()),
        "initial_scale": float(two.optimizer.initial_scale),
    }

    for precision in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(precision)
        batch = _batch()
        examples = {k: v[:5] for k, v in batch.items() if not k.endswith("_easy")}
        data = tf.data.Dataset.from_tensor_slices(examples).batch(4).map(add_easy_negatives)
        one = build(single_device, "replica_bn", {"easy": 1.0})
        two = build(mirrored, "replica_bn", {"easy": 1.0})
        eval_1 = one.evaluate(data, return_dict=True, verbose=0)
        eval_2 = two.evaluate(
            mirrored.experimental_distribute_dataset(data), return_dict=True, verbose=0
        )
        results[f"eval/{precision}"] = {
            "single": {k: float(v) for k, v in eval_1.items()},
            "two": {k: float(v) for k, v in eval_2.items()},
        }
    print(json.dumps(results))


@pytest.fixture(scope="module")
def replicas_result():
    return run_check(__file__, "replicas", timeout=600)


@pytest.mark.slow
def test_two_replicas_with_synchronized_batch_norm_equal_one_device(replicas_result):
    # float32 only: Keras rounds synchronized moments to the compute dtype, so under
    # mixed_bfloat16 one rounding of a mean differs with the order of the sums.
    diff = replicas_result["sync_bn/float32"]
    tolerance = 2e-5
    assert diff["initial"] == 0.0
    assert diff["moved"] > 0.01  # two steps of SGD did change the weights
    assert diff["weights"] < 1e-3 * diff["moved"]  # E[x^2] - E[x]^2 over replicas
    assert diff["bn_state"] < tolerance
    assert diff["logged_loss"] < tolerance
    assert diff["logged_accuracy"] == 0.0  # same negatives, same kinds, same pairs
    assert diff["logged_metrics"] < 1e-4  # metrics from states summed over replicas


@pytest.mark.slow
@pytest.mark.parametrize("precision, tolerance", [("float32", 1e-5), ("mixed_bfloat16", 1e-3)])
def test_two_replicas_with_per_replica_batch_norm_equal_the_halves_on_one_device(
    replicas_result, precision, tolerance
):
    diff = replicas_result[f"replica_bn/{precision}"]
    assert diff["weights"] < tolerance * diff["scale"]
    assert diff["bn_state"] < tolerance * max(1.0, diff["scale"])
    if precision == "float32":  # XLA per replica; bfloat16 is rounded differently there
        assert diff["xla_weights"] < 1e-3 * diff["scale"]


@pytest.mark.slow
def test_mixed_float16_overflow_on_one_replica(replicas_result):
    diff = replicas_result["overflow"]
    assert diff["replica0_alone_finite"]  # replica 0's own gradients did not overflow
    assert diff["weights_finite"]  # both replicas decide together: replica 1's inf is not
    # applied by a replica 0 that decided alone (that gives -inf weights)
    assert diff["weights_moved"] == 0.0  # the step was skipped on both replicas ...
    assert diff["weights_vs_single"] == 0.0  # ... as on one device, BN statistics included
    assert diff["scale_two"] == diff["scale_single"] == diff["initial_scale"] / 2


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_evaluation_with_a_one_example_last_batch_equals_one_device(replicas_result, precision):
    result = replicas_result[f"eval/{precision}"]
    single, two = result["single"], result["two"]
    assert set(single) == set(two)
    for name in single:
        assert np.isfinite(two[name]), name  # not NaN (0/0 on the empty replica)
        assert two[name] == pytest.approx(single[name], rel=1e-5, abs=1e-6), name


@pytest.mark.slow
def test_two_workers_train_quickstart_to_identical_weights(tmp_path, tiny_prepared):
    counting = tmp_path / "counting.gin"
    counting.write_text(
        "import decode_counter\n"
        "train.Model.objective = @objectives.counting_contrastive\n"
        "objectives.counting_contrastive.margin = 1.0\n"
        "train.run.callbacks = [@counter.WriteDecoded()]\n"
    )
    params = [
        "train.run.dataset = @data.prepared_dataset()",
        f"data.prepared_dataset.data_dir = '{tiny_prepared}'",
        "backbones.mc3_18.width = 4",
        "backbones.avts_audio_vgg.width = 4",
        "train.Trainer.batch_size = 8",
        "train.Trainer.train_steps = 6",
        "train.Trainer.steps_per_epoch = 3",
        "train.Evaluation.batch_size = 4",
        "train.Evaluation.clips_per_video = 2",
        "train.Runtime.verbose = 2",
    ]
    processes = workers.start(
        2,
        lambda index: [
            "--gin_file=gin/quickstart.gin",
            f"--gin_file={counting}",
            f"--model_dir={tmp_path / f'worker{index}'}",
            *[
                f"--gin_param={p}"
                for p in [
                    *params,
                    f"counter.WriteDecoded.path = '{tmp_path / f'decoded{index}.json'}'",
                ]
            ],
        ],
    )
    outputs = workers.finish(processes)
    # A worker that failed by itself names the cause; its peer only sees it vanish.
    for index in sorted(range(2), key=lambda i: "unhealthy" in outputs[i][1]):
        assert processes[index].returncode == 0, f"worker {index}:\n{outputs[index][1][-4000:]}"
    digests = [re.findall(r"Weights digest: ([0-9a-f]{64})", err) for _, err in outputs]
    assert len(digests[0]) == 1 and digests[0] == digests[1]
    # Only the chief (worker 0) writes to its model_dir; worker 1 wrote to a temp dir.
    chief = tmp_path / "worker0"
    for name in ("eval.json", "video_tower.keras", "audio_tower.keras", "operative_config.gin"):
        assert (chief / name).is_file()
    assert (chief / "checkpoints" / "checkpoint.json").is_file()
    assert not (tmp_path / "worker1").exists()
    for out, _ in outputs:
        assert out.strip().splitlines()[-1].startswith("sync_accuracy: ")
    # Each worker decoded its own half of every step: at least its 6 x 4 clips, and no
    # clip was decoded by both.
    decoded = [
        {tuple(s) for s in json.loads((tmp_path / f"decoded{i}.json").read_text())}
        for i in range(2)
    ]
    assert len(decoded[0]) >= 24 and len(decoded[1]) >= 24
    assert not decoded[0] & decoded[1]


if __name__ == "__main__" and sys.argv[1:2] == ["replicas"]:
    replicas_main()
