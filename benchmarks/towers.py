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

Measured after the PyTorch-padding change (strided convs ZeroPad then ``valid``), alone on
a 2-core machine with AVX-512/AMX, 2026-12-01; batch 4 x 8 x 112 x 112; oneDNN on; TF 2.21 /
Keras 3.15.1 vs torch 2.14.1 / torchvision 0.29.1; ``--xla off``; medians of 4-6
interleaved rounds (min-max of avts_tf's rounds):

    model   threads  code            avts_tf clips/s   torchvision   vs torch
    mc3_18  1        padding fixed   0.94 (0.86-0.95)  0.77          1.22x
    mc3_18  1        padding fixed   0.91 (0.77-0.96)  0.74          1.24x
    mc3_18  1        before the fix  0.88 (0.74-0.95)  0.73          1.20x
    mc3_18  2        padding fixed   1.35 (1.09-1.49)  0.98          1.37x
    mc3_18  2        padding fixed   1.31 (1.11-1.36)  1.10          1.19x
    mc3_18  2        padding fixed   1.34 (1.19-1.42)  1.08          1.24x
    mc3_18  2        before the fix  1.31 (1.22-1.43)  1.03          1.28x

The explicit padding costs nothing measurable (within the rounds' spread). An earlier
table (AVX2-only EPYC, load 4-12 from other jobs): mc3_18 1.55x (xla off) / 0.61x (xla
on); r3d_18 2.06x / 0.42x; mc2_18 1.56x / 0.89x; r2plus1d_18 1.94x / 1.13x.

With ``--onednn default`` (TensorFlow's default, off on this CPU) mc3_18 ran at 0.41x
torchvision (stock Keras layers 0.33x).

2026-12-04, another CPU (2-core AMD EPYC Zen 4, AVX-512, no AMX), alone, 2 threads, same
command: avts_tf 1.74 (1.74-1.75) against torchvision 1.58 (1.55-1.59), **1.10x**. Grappler
logs ``remapper failed`` on the stem's explicit ``Pad`` (its gradient's ``ShapeN`` reads the
Pad that the Pad+Conv fusion removes), so that pass is dropped for the whole graph; with
``same`` padding instead (wrong sample positions, for the experiment only) the remapper ran
and the step measured 1.76 against 1.62 (1.08x): the failed pass costs nothing measurable.
Since 2026-12-05 those pads are ``PadV2`` (``layers.UnfusedZeroPadding3D``), which the
remapper does not fuse: the log line is gone and the remapper's other rewrites run.
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
        "--tf-inter-op", type=int, default=0,
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
