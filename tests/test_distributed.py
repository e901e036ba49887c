"""Distributed training on CPU: 2 logical replicas equal one device; two workers agree.

Logical devices and collectives are fixed when TensorFlow initialises, so each check runs
in a fresh process. Run as a script, this file is the two-replica check:
``python tests/test_distributed.py replicas``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 8


def _batch(seed: int = 0) -> dict:
    """A global batch whose negatives are all pipeline-cut hard ones."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        "video": rng.random((GLOBAL_BATCH, 4, 32, 32, 3), dtype=np.float32),
        "audio": rng.random((GLOBAL_BATCH, 24, 16, 1), dtype=np.float32),
        "audio_hard": rng.random((GLOBAL_BATCH, 24, 16, 1), dtype=np.float32),
        "valid_hard": np.ones(GLOBAL_BATCH, bool),
        "video_id": np.arange(GLOBAL_BATCH, dtype=np.int64),
    }


def replicas_main() -> None:
    """Prints max differences between 1 device and 2 logical CPU replicas as JSON.

    ``weights_xla`` compares with 2 replicas under ``jit_compile=True`` (XLA per replica).
    """
    sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]
    from avts_tf.distribute import make_strategy

    mirrored = make_strategy(cpu_replicas=2)  # before TensorFlow initialises
    import keras
    import numpy as np
    import tensorflow as tf
    from conftest import tiny_audio_tower, tiny_video_tower

    from avts_tf.curricula import ConstantMixture
    from avts_tf.models import AVTSModel
    from avts_tf.objectives import ContrastiveSync

    def build(strategy, jit=False):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            # Hard negatives only: easy ones roll within each replica's batch (see
            # docs/distributed.md), so they would pair different examples.
            objective = ContrastiveSync(
                curriculum=ConstantMixture({"hard": 1.0}), eval_kinds=("easy", "hard")
            )
            model = AVTSModel(tiny_video_tower(), tiny_audio_tower(), objective)
            optimizer = keras.optimizers.SGD(0.5, momentum=0.9)
            model.compile(optimizer=optimizer, jit_compile=jit)
            optimizer.build(model.trainable_variables)
        return model

    def gradients(model, batch):
        with tf.GradientTape() as tape:
            loss, _ = model.objective.compute(model, batch, training=True, step=tf.constant(0))
        return loss, tape.gradient(loss, model.trainable_variables)

    dataset = tf.data.Dataset.from_tensors(_batch()).repeat()
    single = build(tf.distribute.get_strategy())
    double = build(mirrored)
    double_xla = build(mirrored, jit=True)
    assert double_xla.replica_jit_compile
    assert double.distribute_strategy.num_replicas_in_sync == 2

    loss_1, grads_1 = gradients(single, _batch())
    batch_2 = next(iter(mirrored.experimental_distribute_dataset(dataset)))
    loss_2, grads_2 = mirrored.run(tf.function(lambda b: gradients(double, b)), args=(batch_2,))
    loss_2 = mirrored.reduce("sum", loss_2, axis=None)
    grads_2 = [mirrored.reduce("sum", g, axis=None) for g in grads_2]

    def max_diff(a, b):
        pairs = zip(a, b, strict=True)
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)

    initial = max_diff(single.get_weights(), double.get_weights())
    logs_1 = single.fit(dataset, steps_per_epoch=2, verbose=0).history
    logs_2 = double.fit(dataset, steps_per_epoch=2, verbose=0).history
    double_xla.fit(dataset, steps_per_epoch=2, verbose=0)
    print(json.dumps({
        "initial": initial,
        "loss": abs(float(loss_1) - float(loss_2)),
        "gradients": max_diff(grads_1, grads_2),
        "largest_gradient": max(float(np.max(np.abs(g))) for g in grads_1),
        "weights": max_diff(single.get_weights(), double.get_weights()),
        "logged_loss": abs(logs_1["loss"][0] - logs_2["loss"][0]),
        "weights_xla": max_diff(single.get_weights(), double_xla.get_weights()),
    }))


@pytest.mark.slow
def test_two_logical_cpu_replicas_equal_one_device():
    result = subprocess.run(
        [sys.executable, __file__, "replicas"], cwd=REPO_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    diff = json.loads(result.stdout.strip().splitlines()[-1])
    assert diff["initial"] == 0.0
    assert diff["largest_gradient"] > 0.1
    # Equal up to float32 rounding of sums taken in another order.
    assert diff["loss"] < 1e-6
    assert diff["gradients"] < 2e-5
    assert diff["weights"] < 2e-5  # after two steps of SGD with momentum
    assert diff["logged_loss"] < 1e-6
    assert diff["weights_xla"] < 1e-4


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_quickstart_to_identical_weights(tmp_path, tiny_prepared):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    params = [
        "train.run.dataset = @data.prepared_dataset()",
        f"data.prepared_dataset.data_dir = '{tiny_prepared}'",
        "backbones.mc3_18.width = 4",
        "backbones.avts_audio_vgg.width = 4",
        "train.run.batch_size = 8",
        "train.run.train_steps = 6",
        "train.run.steps_per_epoch = 3",
        "train.run.eval_batch_size = 4",
        "train.run.eval_clips_per_video = 2",
        "train.run.verbose = 2",
    ]
    processes = []
    for index in range(2):
        env = dict(
            os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
            TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            ),
        )
        command = [
            sys.executable, "tools/train.py", "--gin_file=gin/quickstart.gin",
            f"--model_dir={tmp_path / f'worker{index}'}",
            *[f"--gin_param={p}" for p in params],
        ]
        processes.append(subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        ))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=400))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-4000:]
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


if __name__ == "__main__" and sys.argv[1:2] == ["replicas"]:
    replicas_main()
