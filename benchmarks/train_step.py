"""Clips/s of the AVTS train step: avts_tf (XLA, precision variants) vs the PyTorch pair.

One AVTS train step: the video tower on B clips, the audio tower on 2B windows (the
in-sync audio and each example's easy negative), the contrastive loss on L2-normalised
embeddings, backward, SGD with momentum. avts_tf runs ``AVTSModel.train_step`` through
Keras' own train function; PyTorch runs the same pair built from torchvision's
``mc3_18`` (or the same block layout at quickstart width) and an equivalent VGG audio
net, at the same shapes, batch and thread count. Variants run interleaved, round after
round, and the table gives the median clips/s over rounds, so load from other processes
on a shared machine hits all variants alike and the ratios stay meaningful.

    pip install torch==2.14.1 torchvision==0.29.1   # benchmark-only extra
    python benchmarks/train_step.py --configs quickstart mc3_18 --threads 2
    python benchmarks/train_step.py --configs quickstart --precisions float32 \
        mixed_bfloat16 mixed_float16 --xla both --torch-channels-last --torch-bf16

Configs:
* ``quickstart``: gin/quickstart.gin's towers (width 16, one block per group, 64-d
  embeddings), video 8x32x32, audio 49x40 log-mel, batch 16.
* ``mc3_18``: full torchvision mc3_18 (512-d) and the AVTS VGG audio net (width 64,
  two convs per group, 512-d), video 8x112x112, audio 64x64, batch 4.

TensorFlow uses oneDNN only where it detects AVX-512 class CPUs; ``--onednn on`` (the
default) sets ``TF_ENABLE_ONEDNN_OPTS=1`` before TensorFlow is imported.

Measured 2026-12-01, alone on a 2-core AVX-512/AMX machine, 2 threads, float32, ``--xla
off``, after the PyTorch-padding change and the replica-correct step (medians of 3 rounds):

    config      avts_tf clips/s        torch clips/s          ratio
    quickstart  182.4 (170.2-186.5)    130.9 (128.8-144.9)    1.39x
    mc3_18        1.26 (1.21-1.28)       1.01 (0.99-1.11)     1.26x
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import common as bench_common  # benchmarks/common.py (this folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # a CPU benchmark

MARGIN = 1.0
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass(frozen=True)
class Config:
    """Shapes and tower sizes of one benchmark row group."""

    video_shape: tuple[int, int, int, int]  # (T, H, W, 3)
    audio_shape: tuple[int, int, int]  # (frames, mels, 1)
    width: int
    depths: tuple[int, int, int, int]
    embedding_dim: int | None
    batch: int


CONFIGS = {
    "quickstart": Config((8, 32, 32, 3), (49, 40, 1), 16, (1, 1, 1, 1), 64, 16),
    "mc3_18": Config((8, 112, 112, 3), (64, 64, 1), 64, (2, 2, 2, 2), None, 4),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument(
        "--precisions", nargs="+", default=["float32"], choices=PRECISIONS,
        help="avts_tf dtype policies (16-bit ones are 30-50x slower on CPUs without AVX-512)",
    )
    p.add_argument("--xla", choices=("off", "on", "both"), default="both")
    p.add_argument("--batch", type=int, default=None, help="override the config's batch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed train steps per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median taken)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    p.add_argument("--torch-bf16", action="store_true", help="also time torch bf16 autocast")
    p.add_argument(
        "--torch-channels-last", action="store_true",
        help="also time torch with channels-last tensors (the faster torch float32 is the "
        "reference)",
    )
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    p.add_argument("--onednn", choices=("on", "off", "default"), default="on")
    return p.parse_args()


# -- avts_tf ---------------------------------------------------------------------------------
def keras_step(config: Config, batch: int, precision: str, jit: bool) -> Callable[[], None]:
    """A callable running one ``AVTSModel`` train step on fixed random data."""
    import keras
    import numpy as np
    import tensorflow as tf

    import avts_tf.backbones  # noqa: F401  (registers the towers)
    from avts_tf.models import AVTSModel
    from avts_tf.registry import BACKBONES
    from avts_tf.tasks.sync.objectives import ContrastiveSync

    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        kwargs = {"width": config.width, "depths": config.depths}
        video = BACKBONES.build(
            "mc3_18", input_shape=config.video_shape, embedding_dim=config.embedding_dim,
            **kwargs,
        )
        audio = BACKBONES.build(
            "avts_audio_vgg", input_shape=config.audio_shape,
            embedding_dim=config.embedding_dim, **kwargs,
        )
        model = AVTSModel(video, audio, ContrastiveSync(margin=MARGIN))
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        if precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer, jit_compile=jit)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(0)
    data = {
        "video": rng.random((batch, *config.video_shape), dtype=np.float32),
        "audio": rng.standard_normal((batch, *config.audio_shape), dtype=np.float32),
        "video_id": np.arange(batch, dtype=np.int64),
    }
    iterator = iter(tf.data.Dataset.from_tensors(data).repeat())
    model.make_train_function()

    def step() -> None:
        logs = model.train_function(iterator)
        float(logs["loss"])

    return step


# -- PyTorch ---------------------------------------------------------------------------------
def torch_video_resnet(width: int, depths: tuple[int, ...], head):
    """torchvision's MC3 layout (3D stem and layer1, then 1x3x3 groups) at any width."""
    from torch import nn
    from torchvision.models.video import resnet

    class VideoResNetWidth(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv3d(3, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                nn.BatchNorm3d(width),
                nn.ReLU(inplace=True),
            )
            self.inplanes = width  # read by VideoResNet._make_layer
            builders = [resnet.Conv3DSimple] + [resnet.Conv3DNoTemporal] * 3
            self.layers = nn.Sequential(*[
                resnet.VideoResNet._make_layer(
                    self, resnet.BasicBlock, builder, width * 2**g, depth,
                    stride=1 if g == 0 else 2,
                )
                for g, (builder, depth) in enumerate(zip(builders, depths, strict=True))
            ])
            self.head = head

        def forward(self, x):
            return self.head(self.layers(self.stem(x)).mean(dim=(2, 3, 4)))

    return VideoResNetWidth()


def torch_pair(config: Config):
    """The video and audio nets in PyTorch: torchvision's mc3_18 and a VGG audio net."""
    from torch import nn
    from torchvision.models import video

    def head(features: int) -> nn.Module:
        return nn.Linear(features, config.embedding_dim) if config.embedding_dim else nn.Identity()

    if config.width == 64 and config.depths == (2, 2, 2, 2):
        video_net = video.mc3_18()
        video_net.fc = head(512)
    else:
        video_net = torch_video_resnet(config.width, config.depths, head(8 * config.width))
    layers, channels = [], 1
    for group, depth in enumerate(config.depths):
        for _ in range(depth):
            out = config.width * 2**group
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        layers.append(nn.MaxPool2d(2, ceil_mode=True))  # Keras "same" pooling
    audio_net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head(channels))
    return video_net, audio_net


def torch_step(
    config: Config, batch: int, bf16: bool = False, channels_last: bool = False
) -> Callable[[], None]:
    """A callable running one AVTS train step of the PyTorch pair on fixed random data."""
    import contextlib

    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    video_net, audio_net = torch_pair(config)
    video_net.train()
    audio_net.train()
    params = list(video_net.parameters()) + list(audio_net.parameters())
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    t, h, w, _ = config.video_shape
    frames, mels, _ = config.audio_shape
    video = torch.rand(batch, 3, t, h, w)
    audio = torch.randn(batch, 1, frames, mels)
    if channels_last:
        video_net.to(memory_format=torch.channels_last_3d)
        audio_net.to(memory_format=torch.channels_last)
        video = video.contiguous(memory_format=torch.channels_last_3d)
        audio = audio.contiguous(memory_format=torch.channels_last)
    in_sync = torch.cat([torch.ones(batch), torch.zeros(batch)])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        )
        with autocast:
            v = video_net(video)
            a = audio_net(torch.cat([audio, audio.roll(-1, 0)]))
        v = F.normalize(torch.cat([v, v]).float(), dim=-1)
        a = F.normalize(a.float(), dim=-1)
        d = torch.sqrt(((v - a) ** 2).sum(-1) + 1e-12)
        loss = (in_sync * d**2 + (1 - in_sync) * F.relu(MARGIN - d) ** 2).mean()
        loss.backward()
        optimizer.step()
        loss.item()

    return step


# -- measurement -----------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    bench_common.import_frameworks(args.threads, args.onednn, with_torch=not args.no_torch)
    jits = {"off": [False], "on": [True], "both": [False, True]}[args.xla]
    print(
        f"AVTS train step (video B clips + audio 2B windows + contrastive + SGD), "
        f"{args.threads} threads, {args.rounds} rounds x {args.steps} steps, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')}"
    )
    header = f"{'config':<11} {'variant':<30} {'clips/s':>8} {'min-max':>13} {'vs torch':>9}"
    print(header + "\n" + "-" * len(header), flush=True)
    for name in args.configs:
        config = CONFIGS[name]
        batch = args.batch or config.batch
        variants: dict[str, Callable[[], None]] = {}
        if not args.no_torch:
            variants["torch float32"] = torch_step(config, batch)
            if args.torch_channels_last:
                variants["torch float32 channels_last"] = torch_step(
                    config, batch, channels_last=True
                )
            if args.torch_bf16:
                variants["torch bf16 autocast"] = torch_step(config, batch, bf16=True)
        for precision in args.precisions:
            for jit in jits:
                key = f"avts_tf {precision} xla={'on' if jit else 'off'}"
                variants[key] = keras_step(config, batch, precision, jit)
        rates = bench_common.measure(variants, batch, args.steps, args.rounds, args.warmup)
        medians = {k: statistics.median(v) for k, v in rates.items()}
        ref = max(
            (r for k, r in medians.items() if k.startswith("torch float32")), default=None
        )
        shape = f"video {batch}x{'x'.join(map(str, config.video_shape[:3]))}"
        print(f"{name} ({shape}, audio 2x{batch}x{config.audio_shape[0]}x"
              f"{config.audio_shape[1]})")
        for key, rate in medians.items():
            spread = f"{min(rates[key]):.2f}-{max(rates[key]):.2f}"
            ratio = f"{rate / ref:8.2f}x" if ref else ""
            print(f"{name:<11} {key:<30} {rate:8.2f} {spread:>13} {ratio:>9}", flush=True)


if __name__ == "__main__":
    main()
