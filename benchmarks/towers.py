"""Train-step throughput of the video ResNet-18 towers: avts_tf vs torchvision.

For each tower, one process times a full training step (forward, backward, SGD with
momentum on a 400-way cross-entropy) at the same input shape, batch and thread count
for: avts_tf (its default fast kernels) with XLA off and on, avts_tf built from stock
Keras layers (``--stock``), and torchvision's model. Variants run interleaved, round
after round, and the table reports the median clips/s over rounds, so load from other
processes on a shared machine hits all variants alike and the ratios stay meaningful.

    pip install torch==2.14.1 torchvision==0.29.1   # benchmark-only extra
    python benchmarks/towers.py --models mc3_18 --batch 4 --frames 8 --size 112 --threads 2

Uses every thread it is given: run it briefly on shared machines.

Measurements: ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import common as bench_common  # benchmarks/common.py (this folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # a CPU benchmark

NUM_CLASSES = 400
MODELS = ("r3d_18", "mc2_18", "mc3_18", "r2plus1d_18")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--tf-inter-op",
        type=int,
        default=0,
        help="TensorFlow ops run at once: 0 = TensorFlow's default, one per core, as "
        "tools/train.py runs; 1 = one at a time, as PyTorch's eager step",
    )
    p.add_argument("--steps", type=int, default=2, help="timed train steps per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median taken)")
    p.add_argument("--xla", choices=("off", "on", "both"), default="both")
    p.add_argument("--stock", action="store_true", help="also time stock Keras layers")
    p.add_argument("--no-torch", action="store_true", help="skip torchvision")
    p.add_argument(
        "--onednn",
        choices=("on", "off", "default"),
        default="on",
        help="TF_ENABLE_ONEDNN_OPTS; TensorFlow leaves oneDNN off on CPUs without AVX-512",
    )
    return p.parse_args()


def keras_step(name: str, args: argparse.Namespace, jit: bool, stock: bool) -> Callable[[], None]:
    """A callable running one avts_tf train step on fixed random data."""
    import keras
    import tensorflow as tf

    from avts_tf.backbones import common
    from avts_tf.registry import BACKBONES

    shape = (args.frames, args.size, args.size, 3)
    if stock:
        with common.stock_keras_layers():
            model = BACKBONES.build(name, input_shape=shape, num_classes=NUM_CLASSES)
    else:
        model = BACKBONES.build(name, input_shape=shape, num_classes=NUM_CLASSES)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.random.normal((args.batch, *shape))
    y = tf.random.uniform((args.batch,), 0, NUM_CLASSES, tf.int32)

    @tf.function(jit_compile=jit)
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    return lambda: step(x, y).numpy()


def torch_step(name: str, args: argparse.Namespace) -> Callable[[], None]:
    """A callable running one torchvision train step on fixed random data."""
    import torch
    from torchvision.models import video

    if name == "mc2_18":  # Tran et al.'s MC2: 3D stem, all residual groups 1x3x3
        model = video.VideoResNet(
            video.resnet.BasicBlock,
            [video.resnet.Conv3DNoTemporal] * 4,
            [2, 2, 2, 2],
            video.resnet.BasicStem,
            num_classes=NUM_CLASSES,
        )
    else:
        model = getattr(video, name)(num_classes=NUM_CLASSES)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size)
    y = torch.randint(0, NUM_CLASSES, (args.batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()

    return step


def main() -> None:
    args = parse_args()
    bench_common.import_frameworks(
        args.threads, args.onednn, with_torch=not args.no_torch, tf_inter_op=args.tf_inter_op
    )
    jits = {"off": [False], "on": [True], "both": [False, True]}[args.xla]
    print(
        f"train step, batch {args.batch} x {args.frames} x {args.size} x {args.size}, "
        f"{args.threads} threads, TensorFlow inter-op {args.tf_inter_op or 'default'}, "
        f"{args.rounds} rounds x {args.steps} steps, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')}"
    )
    header = f"{'model':<12} {'variant':<22} {'clips/s':>8} {'min-max':>13} {'vs torch':>9}"
    print(header + "\n" + "-" * len(header), flush=True)
    for name in args.models:
        variants: dict[str, Callable[[], None]] = {}
        for jit in jits:
            variants[f"avts_tf xla={'on' if jit else 'off'}"] = keras_step(name, args, jit, False)
            if args.stock:
                variants[f"keras-stock xla={'on' if jit else 'off'}"] = keras_step(
                    name, args, jit, True
                )
        if not args.no_torch:
            variants["torchvision"] = torch_step(name, args)
        rates = bench_common.measure(variants, args.batch, args.steps, args.rounds)
        medians = {k: statistics.median(v) for k, v in rates.items()}
        ref = medians.get("torchvision")
        for key, rate in medians.items():
            spread = f"{min(rates[key]):.2f}-{max(rates[key]):.2f}"
            ratio = f"{rate / ref:8.2f}x" if ref else ""
            print(f"{name:<12} {key:<22} {rate:8.2f} {spread:>13} {ratio:>9}", flush=True)


if __name__ == "__main__":
    main()
