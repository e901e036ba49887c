"""Clips/s of the AVTS and TSSL train steps: avts_tf (XLA, precision variants) vs PyTorch.

**AVTS** (``--task avts``, the default): the video tower on B clips, the audio tower on 2B
windows (the in-sync audio and each example's easy negative), the contrastive loss on
L2-normalised embeddings, backward, SGD with momentum.

**TSSL** (``--task tssl``; ``--task both`` runs both): the temporal task
(``TemporalContrastive``) on B examples of K = 2 views, the towers on the B*K flattened
views; linear speed and direction heads per modality on every view, ordering MLPs on
concatenated features (video-video and audio-audio pairs i < j, video-audio pairs
i != j), 2-layer projections and the multi-positive queue InfoNCE (v0->v1, v1->v0 and
a0->v0 on the video queue, v0->a0 on the audio queue), backward, SGD with momentum, then
the FIFO enqueue of view 0's video and audio keys. Both queues (256 entries) start full
(random unit keys planted in both implementations), so the timed steps use the queue's
extra positives and negatives. Clips/s counts B*K clips per step. At start-up,
``check_tssl_peer`` asserts that the PyTorch loss, its gradients and the enqueued queues equal
``TemporalContrastive``'s on the same embeddings, head weights, labels and planted full
queue (to 1e-4 relative).

avts_tf runs ``AVTSModel.train_step`` through Keras' own train function; PyTorch runs the
same step with towers built from torchvision's ``mc3_18`` (or the same block layout at
quickstart width) and an equivalent VGG audio net, at the same shapes, batch and thread
count. Variants run interleaved, round after round, and the table gives the median
clips/s over rounds, so load from other processes on a shared machine hits all variants
alike and the ratios stay meaningful.

    pip install torch==2.14.1 torchvision==0.29.1   # benchmark-only extra
    python benchmarks/train_step.py --configs quickstart mc3_18 --threads 2
    python benchmarks/train_step.py --task tssl --configs quickstart --threads 2
    python benchmarks/train_step.py --configs quickstart --precisions float32 \
        mixed_bfloat16 mixed_float16 --xla both --torch-channels-last --torch-bf16

Configs (``--batch`` overrides the clips per step; TSSL takes batch // K examples):
* ``quickstart``: gin/quickstart.gin's towers (width 16, one block per group, 64-d
  embeddings), video 8x32x32, audio 49x40 log-mel, batch 16 (TSSL: 8 examples x 2
  views, gin/tssl_quickstart.gin's heads: projection and hidden width 64, temperature
  0.1, queue 256, video-video weight 0.1, speeds 1, 2, 4).
* ``mc3_18``: full torchvision mc3_18 (512-d) and the AVTS VGG audio net (width 64,
  two convs per group, 512-d), video 8x112x112, audio 64x64, batch 4 (TSSL: 2 examples
  x 2 views).

TensorFlow uses oneDNN only where it detects AVX-512 class CPUs; ``--onednn on`` (the
default) sets ``TF_ENABLE_ONEDNN_OPTS=1`` before TensorFlow is imported.

Measurements: ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import itertools
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import common as bench_common  # benchmarks/common.py (this folder is on sys.path)

if TYPE_CHECKING:
    import numpy as np
    import torch

    from avts_tf.models import AVTSModel
    from avts_tf.tasks.base import Task
    from avts_tf.tasks.temporal.task import TemporalContrastive

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # a CPU benchmark

MARGIN = 1.0
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
TASKS = ("avts", "tssl", "both")
Step = Callable[[], None]


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


@dataclasses.dataclass(frozen=True)
class Tssl:
    """The temporal task's settings (gin/tssl_quickstart.gin's)."""

    num_views: int = 2
    speeds: tuple[int, ...] = (1, 2, 4)
    projection_dim: int = 64
    hidden_units: int = 64
    temperature: float = 0.1
    queue_size: int = 256
    video_video_weight: float = 0.1
    window: int = 16_000  # audio samples of a 1x view, for view_start / view_span


TSSL = Tssl()
ORDER_CLASSES = 3  # ordering.ORDER_CLASSES: overlap, i before j, j before i
MASKED_LOGIT = -1e9  # contrastive._MASKED_LOGIT
PEER_TOLERANCE = 1e-4


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", choices=TASKS, default="avts", help="which train step to time")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument(
        "--precisions",
        nargs="+",
        default=["float32"],
        choices=PRECISIONS,
        help="avts_tf dtype policies (16-bit ones are 30-50x slower on CPUs without AVX-512)",
    )
    p.add_argument("--xla", choices=("off", "on", "both"), default="both")
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="override the config's clips per step (TSSL: batch // K examples)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--tf-inter-op",
        type=int,
        default=0,
        help="TensorFlow ops run at once: 0 = TensorFlow's default, one per core, as "
        "tools/train.py runs; 1 = one at a time, as PyTorch's eager step",
    )
    p.add_argument("--steps", type=int, default=3, help="timed train steps per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median taken)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    p.add_argument("--torch-bf16", action="store_true", help="also time torch bf16 autocast")
    p.add_argument(
        "--torch-channels-last",
        action="store_true",
        help="also time torch with channels-last tensors (the faster torch float32 is the "
        "reference)",
    )
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    p.add_argument("--onednn", choices=("on", "off", "default"), default="on")
    return p.parse_args()


# -- avts_tf ---------------------------------------------------------------------------------
def keras_model(
    config: Config, objective: Callable[[], Task], precision: str, jit: bool
) -> AVTSModel:
    """A compiled ``AVTSModel`` of the config's towers, built under ``precision``."""
    import keras

    import avts_tf.backbones  # noqa: F401  (registers the towers)
    from avts_tf.models import AVTSModel
    from avts_tf.registry import BACKBONES

    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        kwargs = {
            "width": config.width,
            "depths": config.depths,
            "embedding_dim": config.embedding_dim,
        }
        video = BACKBONES.build("mc3_18", input_shape=config.video_shape, **kwargs)
        audio = BACKBONES.build("avts_audio_vgg", input_shape=config.audio_shape, **kwargs)
        model = AVTSModel(video, audio, objective())
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        if precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer, jit_compile=jit)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model


def keras_runner(model: AVTSModel, data: dict[str, np.ndarray]) -> Step:
    """A callable running one train step of ``model`` (Keras' train function) on ``data``."""
    import tensorflow as tf

    iterator = iter(tf.data.Dataset.from_tensors(data).repeat())
    model.make_train_function()

    def step() -> None:
        logs = model.train_function(iterator)
        float(logs["loss"])

    return step


def keras_step(config: Config, batch: int, precision: str, jit: bool) -> Step:
    """A callable running one ``AVTSModel`` AVTS train step on fixed random data."""
    import numpy as np

    from avts_tf.tasks.sync.objectives import ContrastiveSync

    model = keras_model(config, lambda: ContrastiveSync(margin=MARGIN), precision, jit)
    rng = np.random.default_rng(0)
    data = {
        "video": rng.random((batch, *config.video_shape), dtype=np.float32),
        "audio": rng.standard_normal((batch, *config.audio_shape), dtype=np.float32),
        "video_id": np.arange(batch, dtype=np.int64),
    }
    return keras_runner(model, data)


def tssl_task(settings: Tssl = TSSL) -> TemporalContrastive:
    """The benchmark's ``TemporalContrastive``."""
    from avts_tf.tasks.temporal.task import TemporalContrastive
    from avts_tf.tasks.temporal.views import ViewSpec

    return TemporalContrastive(
        view_spec=ViewSpec(num_views=settings.num_views, speeds=settings.speeds),
        projection_dim=settings.projection_dim,
        hidden_units=settings.hidden_units,
        temperature=settings.temperature,
        queue_size=settings.queue_size,
        video_video_weight=settings.video_video_weight,
    )


def tssl_labels(
    rng: np.random.Generator, examples: int, settings: Tssl = TSSL
) -> dict[str, np.ndarray]:
    """Labels of a temporal batch; views 0 and 1 overlap, or 0 or 1 comes first, in turn."""
    import numpy as np

    k = settings.num_views
    speed = rng.integers(0, len(settings.speeds), (examples, k)).astype(np.int32)
    span = np.asarray(settings.speeds, np.int64)[speed] * settings.window
    start = np.zeros((examples, k), np.int64)
    start[:, 2:] = rng.integers(0, 8 * settings.window, (examples, k - 2))
    for b in range(examples):  # Ordering class of views (0, 1): overlap, 0 first, 1 first.
        start[b, :2] = [(0, span[b, 0] // 2), (0, span[b, 0]), (span[b, 1], 0)][b % 3]
    start += rng.integers(0, settings.window, (examples, 1))
    return {
        "speed": speed,
        "backward": rng.integers(0, 2, (examples, k)).astype(np.int32),
        "view_start": start,
        "view_span": span,
        "video_id": rng.integers(0, 2**62, examples, dtype=np.int64),
        "label": rng.integers(0, 10, examples, dtype=np.int64),
    }


def keras_tssl_step(config: Config, examples: int, precision: str, jit: bool) -> Step:
    """A callable running one ``AVTSModel`` TSSL train step, queues full (planted)."""
    import numpy as np

    model = keras_model(config, tssl_task, precision, jit)
    rng = np.random.default_rng(0)
    k = TSSL.num_views
    data = {
        "video": rng.random((examples, k, *config.video_shape), dtype=np.float32),
        "audio": rng.standard_normal((examples, k, *config.audio_shape), dtype=np.float32),
        **tssl_labels(rng, examples),
    }
    step = keras_runner(model, data)
    fill_task_queues(model.objective, planted_queues())
    return step


NumpyQueues = dict[str, tuple["np.ndarray", "np.ndarray"]]


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    """``[rows, dim]`` float32 random rows of unit length."""
    import numpy as np

    out = rng.standard_normal((rows, dim)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def planted_queues(seed: int = 0) -> NumpyQueues:
    """Full queues per modality: random unit keys and random video ids.

    Both implementations start their timed steps from these instead of filling their
    queues with train steps (128 steps per implementation at mc3_18's batch); a full
    queue's step costs the same whatever its entries.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    size, dim = TSSL.queue_size, TSSL.projection_dim
    return {
        modality: (unit_rows(rng, size, dim), rng.integers(0, 2**62, size, dtype=np.int64))
        for modality in ("video", "audio")
    }


def fill_task_queues(task: TemporalContrastive, queues: NumpyQueues) -> None:
    """Sets ``task``'s queues to ``queues`` (entries, video ids), marked full."""
    for modality, (entries, ids) in queues.items():
        queue, queue_ids, filled = task.queues[modality]
        queue.assign(entries)
        queue_ids.assign(ids)
        filled.assign(len(ids))


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
            self.layers = nn.Sequential(
                *[
                    resnet.VideoResNet._make_layer(
                        self,
                        resnet.BasicBlock,
                        builder,
                        width * 2**g,
                        depth,
                        stride=1 if g == 0 else 2,
                    )
                    for g, (builder, depth) in enumerate(zip(builders, depths, strict=True))
                ]
            )
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


def torch_setup(config: Config, clips: int, channels_last: bool) -> tuple:
    """``(video_net, audio_net, video, audio)``: the pair in training mode, ``clips`` inputs."""
    import torch

    torch.manual_seed(0)
    video_net, audio_net = torch_pair(config)
    video_net.train()
    audio_net.train()
    t, h, w, _ = config.video_shape
    frames, mels, _ = config.audio_shape
    video = torch.rand(clips, 3, t, h, w)
    audio = torch.randn(clips, 1, frames, mels)
    if channels_last:
        video_net.to(memory_format=torch.channels_last_3d)
        audio_net.to(memory_format=torch.channels_last)
        video = video.contiguous(memory_format=torch.channels_last_3d)
        audio = audio.contiguous(memory_format=torch.channels_last)
    return video_net, audio_net, video, audio


def torch_autocast(bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU, or nothing."""
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def torch_sgd(*modules: torch.nn.Module) -> torch.optim.Optimizer:
    """The benchmark's optimizer (SGD 0.01, momentum 0.9) over ``modules``."""
    import torch

    params = [p for module in modules for p in module.parameters()]
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


def torch_step(config: Config, batch: int, bf16: bool = False, channels_last: bool = False) -> Step:
    """A callable running one AVTS train step of the PyTorch pair on fixed random data."""
    import torch
    import torch.nn.functional as F

    video_net, audio_net, video, audio = torch_setup(config, batch, channels_last)
    optimizer = torch_sgd(video_net, audio_net)
    in_sync = torch.cat([torch.ones(batch), torch.zeros(batch)])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch_autocast(bf16):
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


# -- PyTorch TSSL ------------------------------------------------------------------------------
Queues = dict[str, tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]]


def torch_tssl_heads(video_dim: int, audio_dim: int, settings: Tssl = TSSL) -> torch.nn.ModuleDict:
    """``TemporalContrastive``'s heads (same names, same shapes) as PyTorch modules."""
    from torch import nn

    hidden = settings.hidden_units

    def mlp(width: int, out: int) -> nn.Module:
        return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, out))

    speeds = len(settings.speeds)
    return nn.ModuleDict(
        {
            "speed_video": nn.Linear(video_dim, speeds),
            "speed_audio": nn.Linear(audio_dim, speeds),
            "direction_video": nn.Linear(video_dim, 2),
            "direction_audio": nn.Linear(audio_dim, 2),
            "order_video": mlp(2 * video_dim, ORDER_CLASSES),
            "order_audio": mlp(2 * audio_dim, ORDER_CLASSES),
            "order_cross": mlp(video_dim + audio_dim, ORDER_CLASSES),
            "project_video": mlp(video_dim, settings.projection_dim),
            "project_audio": mlp(audio_dim, settings.projection_dim),
        }
    )


def torch_queues(queues: NumpyQueues) -> Queues:
    """``queues`` (entries, video ids) as PyTorch queues ``(entries, ids, filled)``, full."""
    import torch

    return {
        modality: (torch.from_numpy(entries), torch.from_numpy(ids), torch.tensor(len(ids)))
        for modality, (entries, ids) in queues.items()
    }


def torch_order_labels(
    start_i: torch.Tensor, span_i: torch.Tensor, start_j: torch.Tensor, span_j: torch.Tensor
) -> torch.Tensor:
    """``ordering.order_labels``: 0 overlap, 1 ``i`` before ``j``, 2 ``j`` before ``i``."""
    import torch

    labels = torch.where(start_j + span_j <= start_i, 2, 0)
    return torch.where(start_i + span_i <= start_j, 1, labels)


def torch_info_nce_with_queue(
    anchors: torch.Tensor,
    keys: torch.Tensor,
    ids: torch.Tensor,
    queue: torch.Tensor,
    queue_ids: torch.Tensor,
    queue_full: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """``contrastive.info_nce_with_queue`` on one device, both queue extras on: ``[B]``."""
    import torch
    import torch.nn.functional as F

    a = F.normalize(anchors.float(), dim=-1)
    k = F.normalize(keys.float(), dim=-1)
    q = F.normalize(queue.detach().float(), dim=-1)
    inv_tau = 1.0 / temperature
    scores = k.detach() @ q.T  # [B, Q]: the keys' lookups, without gradient

    def masked_argmax(eligible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = scores.masked_fill(~eligible, -float("inf")).argmax(-1)
        found = eligible.any(-1)
        return torch.where(found, index, 0), found

    negative_mask = ids[:, None] != ids[None, :]  # [i, j]
    # Extra positive: the nearest entry of k[i] of another video than i's.
    positive, positive_found = masked_argmax(ids[:, None] != queue_ids[None, :])
    # Extra negatives: the nearest entry of k[j] of another video than i's (_negative_neighbours).
    n1 = scores.argmax(-1)
    n1_id = queue_ids[n1]
    n2, found2 = masked_argmax(queue_ids[None, :] != n1_id[:, None])
    n1_is_anchor_video = n1_id[None, :] == ids[:, None]  # [i, j]
    negative = torch.where(n1_is_anchor_video, n2[None, :], n1[None, :])
    negative_found = ~n1_is_anchor_video | found2[None, :]

    positives = torch.stack([(a * k).sum(-1), (a * q[positive]).sum(-1)], 1) * inv_tau
    weights = torch.stack([torch.ones_like(a[:, 0]), (positive_found & queue_full).float()], 1)
    negatives = torch.cat([a @ k.T, torch.einsum("id,ijd->ij", a, q[negative])], 1) * inv_tau
    mask = torch.cat([negative_mask, negative_mask & negative_found & queue_full], 1)
    lse = torch.logsumexp(negatives.masked_fill(~mask, MASKED_LOGIT), 1)
    per_positive = F.softplus(lse[:, None] - positives)
    return (per_positive * weights).sum(1) / weights.sum(1)


def torch_tssl_loss(
    heads: torch.nn.ModuleDict,
    video: torch.Tensor,
    audio: torch.Tensor,
    labels: dict[str, torch.Tensor],
    queues: Queues,
    settings: Tssl = TSSL,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``TemporalContrastive.compute`` (training, one device) on tower embeddings.

    Args:
        heads: ``torch_tssl_heads``.
        video: ``[B, K, Dv]`` video tower embeddings (float32).
        audio: ``[B, K, Da]`` audio tower embeddings.
        labels: ``speed``, ``backward`` ``[B, K]`` (int64), ``view_start``, ``view_span``
            ``[B, K]``, ``video_id`` ``[B]``.
        queues: ``(entries [Q, D], video ids [Q], filled)`` per modality, read only.

    Returns:
        ``(loss, keys)``: the loss summed over examples and divided by B, and the
        L2-normalised view-0 ``video`` and ``audio`` keys to enqueue (detached).
    """
    import torch
    import torch.nn.functional as F

    size, k = video.shape[:2]

    def classify(name: str, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(heads[name](features), targets, reduction="sum")

    terms = []
    for modality, x in (("video", video), ("audio", audio)):  # per view, all K views
        for head, key in (("speed", "speed"), ("direction", "backward")):
            terms.append(classify(f"{head}_{modality}", x.flatten(0, 1), labels[key].flatten()))
    start, span = labels["view_start"], labels["view_span"]
    for i, j in itertools.combinations(range(k), 2):
        order = torch_order_labels(start[:, i], span[:, i], start[:, j], span[:, j])
        if i == 0:  # video view 0 against the audio of view j
            terms.append(classify("order_cross", torch.cat([video[:, 0], audio[:, j]], -1), order))
        for name, x in (("order_video", video), ("order_audio", audio)):
            terms.append(classify(name, torch.cat([x[:, i], x[:, j]], -1), order))

    zv = [heads["project_video"](video[:, i]) for i in range(2)]
    za = heads["project_audio"](audio[:, 0])
    ids = labels["video_id"]

    def contrast(anchors: torch.Tensor, keys: torch.Tensor, modality: str) -> torch.Tensor:
        queue, queue_ids, filled = queues[modality]
        full = filled == queue.shape[0]
        return torch_info_nce_with_queue(
            anchors, keys, ids, queue, queue_ids, full, settings.temperature
        ).sum()

    among_video = contrast(zv[0], zv[1], "video") + contrast(zv[1], zv[0], "video")
    terms += [
        settings.video_video_weight * among_video,
        contrast(zv[0], za, "audio"),
        contrast(za, zv[0], "video"),
    ]
    keys = {"video": F.normalize(zv[0].detach(), dim=-1), "audio": F.normalize(za.detach(), dim=-1)}
    return torch.stack(terms).sum() / size, keys


def torch_enqueue(queues: Queues, keys: dict[str, torch.Tensor], ids: torch.Tensor) -> None:
    """``contrastive.enqueue`` of each modality's keys (newest first), in place of ``queues``."""
    import torch

    with torch.no_grad():
        for modality in list(queues):
            queue, queue_ids, filled = queues[modality]
            size = queue.shape[0]
            queues[modality] = (
                torch.cat([keys[modality].flip(0), queue])[:size],
                torch.cat([ids.flip(0), queue_ids])[:size],
                torch.clamp(filled + len(ids), max=size),
            )


def torch_tssl_step(
    config: Config, examples: int, bf16: bool = False, channels_last: bool = False
) -> Step:
    """A callable running one TSSL train step in PyTorch on fixed random data, queues full."""
    import numpy as np
    import torch

    k = TSSL.num_views
    video_net, audio_net, video, audio = torch_setup(config, examples * k, channels_last)
    dim = config.embedding_dim or 8 * config.width
    heads = torch_tssl_heads(dim, dim)
    optimizer = torch_sgd(video_net, audio_net, heads)
    labels = {
        key: torch.from_numpy(value).long()
        for key, value in tssl_labels(np.random.default_rng(0), examples).items()
    }
    queues = torch_queues(planted_queues())

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch_autocast(bf16):
            v = video_net(video)
            a = audio_net(audio)
        loss, keys = torch_tssl_loss(
            heads,
            v.float().reshape(examples, k, -1),
            a.float().reshape(examples, k, -1),
            labels,
            queues,
        )
        loss.backward()
        optimizer.step()
        torch_enqueue(queues, keys, labels["video_id"])
        loss.item()

    return step


# -- equivalence of the PyTorch TSSL step --------------------------------------------------------
def copy_tssl_heads(task: TemporalContrastive, heads: torch.nn.ModuleDict) -> None:
    """Copies the task's Dense weights (kernel ``[in, out]``) into the torch Linears."""
    import keras
    import torch

    with torch.no_grad():
        for name, head in task.heads.items():
            dense = [head] if isinstance(head, keras.layers.Dense) else head.layers
            linear = [m for m in heads[name].modules() if isinstance(m, torch.nn.Linear)]
            for source, target in zip(dense, linear, strict=True):
                kernel, bias = (v.numpy() for v in source.weights)
                target.weight.copy_(torch.from_numpy(kernel.T))
                target.bias.copy_(torch.from_numpy(bias))


def _relative(value: Any, reference: Any) -> float:
    """``max |value - reference| / max |reference|``."""
    import numpy as np

    value, reference = np.asarray(value, np.float64), np.asarray(reference, np.float64)
    return float(np.max(np.abs(value - reference)) / np.max(np.abs(reference)))


def check_tssl_peer(
    examples: int = 8, video_dim: int = 24, audio_dim: int = 16, seed: int = 0
) -> dict[str, float]:
    """Max relative differences of the PyTorch TSSL step from ``TemporalContrastive``'s.

    Both get the same random tower embeddings ``[B, K, D]`` (the task through a stand-in
    model whose towers return them), the same head weights, the same labels (two
    examples of one video) and the same full queues, planted with the step's own keys
    under their video ids, so the same-video masking decides the neighbours. Compares
    the loss, its gradients with respect to the embeddings and the queues after the
    enqueue.

    Raises:
        AssertionError: A difference above ``PEER_TOLERANCE``.
    """
    import types

    import numpy as np
    import tensorflow as tf
    import torch

    rng = np.random.default_rng(seed)
    k, size, dim = TSSL.num_views, TSSL.queue_size, TSSL.projection_dim
    video = rng.standard_normal((examples, k, video_dim)).astype(np.float32)
    audio = rng.standard_normal((examples, k, audio_dim)).astype(np.float32)
    labels = tssl_labels(rng, examples)
    labels["video_id"][1] = labels["video_id"][0]  # same-video masking in the batch
    task = tssl_task()
    task.build_head(video_dim, audio_dim)
    heads = torch_tssl_heads(video_dim, audio_dim)
    copy_tssl_heads(task, heads)

    # Planted queues: random unit entries of the batch's and other videos, and each
    # contrasted key at random rows: v0 under its own video id (the lookups must skip
    # it), v1 and a0 under the previous example's (the nearest entry of a key then
    # belongs to another anchor's video: the extra negatives' second-nearest branch).
    with torch.no_grad():
        zv = [heads["project_video"](torch.from_numpy(video[:, i])) for i in range(2)]
        za = heads["project_audio"](torch.from_numpy(audio[:, 0]))
    planted = {"video": [(zv[0], 0), (zv[1], 1)], "audio": [(za, 1)]}  # (keys, id shift)
    torch_labels = {key: torch.from_numpy(value).long() for key, value in labels.items()}
    numpy_queues: NumpyQueues = {}
    pool = np.concatenate([labels["video_id"], rng.integers(0, 2**62, 16, dtype=np.int64)])
    for modality, keys in planted.items():
        entries = unit_rows(rng, size, dim)
        ids = rng.choice(pool, size)
        rows = rng.choice(size, (len(keys), examples), replace=False)
        for (key, shift), at in zip(keys, rows, strict=True):
            entries[at] = torch.nn.functional.normalize(key, dim=-1).numpy()
            ids[at] = np.roll(labels["video_id"], shift)
        numpy_queues[modality] = (entries, ids)
    fill_task_queues(task, numpy_queues)
    queues = torch_queues(numpy_queues)

    # TemporalContrastive.compute on the embeddings, then its enqueue.
    def identity(x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return x

    stand_in = types.SimpleNamespace(video_tower=identity, audio_tower=identity)
    batch = {key: tf.constant(value) for key, value in labels.items()}
    batch.update(video=tf.constant(video), audio=tf.constant(audio))
    with tf.GradientTape() as tape:
        tape.watch([batch["video"], batch["audio"]])
        loss, _, values = task.compute(
            stand_in, batch, training=True, step=tf.constant(0, tf.int64)
        )
    tf_grads = tape.gradient(loss, [batch["video"], batch["audio"]])
    task.after_step(values, tf.constant(True))

    # The PyTorch step's loss on the same embeddings, then its enqueue.
    embeddings = [torch.from_numpy(x).requires_grad_() for x in (video, audio)]
    torch_loss, keys = torch_tssl_loss(heads, *embeddings, torch_labels, queues)
    torch_loss.backward()
    torch_enqueue(queues, keys, torch_labels["video_id"])

    differences = {
        "loss": _relative(torch_loss.item(), loss.numpy()),
        "grad_video": _relative(embeddings[0].grad, tf_grads[0]),
        "grad_audio": _relative(embeddings[1].grad, tf_grads[1]),
    }
    for modality, (queue, queue_ids, filled) in task.queues.items():
        mine = queues[modality]
        differences[f"{modality}_queue"] = _relative(mine[0], queue.numpy())
        assert np.array_equal(mine[1].numpy(), queue_ids.numpy()), f"{modality} queue ids"
        assert int(mine[2]) == int(filled.numpy()), f"{modality} queue filled"
    worst = max(differences, key=differences.get)
    assert differences[worst] <= PEER_TOLERANCE, f"PyTorch TSSL step differs: {differences}"
    return differences


# -- measurement -----------------------------------------------------------------------------
def variants(
    args: argparse.Namespace,
    jits: list[bool],
    torch_factory: Callable[..., Step],
    keras_factory: Callable[[str, bool], Step],
) -> dict[str, Step]:
    """The torch variants asked for, then avts_tf per precision and XLA setting."""
    out: dict[str, Step] = {}
    if not args.no_torch:
        out["torch float32"] = torch_factory()
        if args.torch_channels_last:
            out["torch float32 channels_last"] = torch_factory(channels_last=True)
        if args.torch_bf16:
            out["torch bf16 autocast"] = torch_factory(bf16=True)
    for precision in args.precisions:
        for jit in jits:
            out[f"avts_tf {precision} xla={'on' if jit else 'off'}"] = keras_factory(precision, jit)
    return out


def report(name: str, title: str, rates: dict[str, list[float]]) -> None:
    """Prints one config's rows: median clips/s, min-max, ratio to the best torch float32."""
    medians = {k: statistics.median(v) for k, v in rates.items()}
    ref = max((r for k, r in medians.items() if k.startswith("torch float32")), default=None)
    print(f"{name} ({title})")
    for key, rate in medians.items():
        spread = f"{min(rates[key]):.2f}-{max(rates[key]):.2f}"
        ratio = f"{rate / ref:8.2f}x" if ref else ""
        print(f"{name:<11} {key:<30} {rate:8.2f} {spread:>13} {ratio:>9}", flush=True)


def run_task(task: str, args: argparse.Namespace, jits: list[bool]) -> None:
    """Times the ``avts`` or ``tssl`` train step over the configs and prints its table."""
    onednn = f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')}"
    inter_op = args.tf_inter_op or "TensorFlow's default"
    timing = (
        f"{args.threads} threads, TensorFlow inter-op {inter_op}, {args.rounds} rounds x "
        f"{args.steps} steps, {onednn}"
    )
    if task == "avts":
        print(f"AVTS train step (video B clips + audio 2B windows + contrastive + SGD), {timing}")
    else:
        print(
            f"TSSL train step (B examples x {TSSL.num_views} views: towers on B*K clips + "
            f"speed/direction/ordering heads + queue InfoNCE + SGD + enqueue, queue "
            f"{TSSL.queue_size} filled), {timing}"
        )
        if not args.no_torch:
            differences = check_tssl_peer()
            print(
                "PyTorch TSSL step vs TemporalContrastive.compute, max relative difference: "
                + ", ".join(f"{k} {v:.1e}" for k, v in differences.items()),
                flush=True,
            )
    header = f"{'config':<11} {'variant':<30} {'clips/s':>8} {'min-max':>13} {'vs torch':>9}"
    print(header + "\n" + "-" * len(header), flush=True)
    for name in args.configs:
        config = CONFIGS[name]
        batch = args.batch or config.batch
        t, h, w, _ = config.video_shape
        frames, mels, _ = config.audio_shape
        if task == "avts":
            clips = batch
            torch_factory = functools.partial(torch_step, config, batch)
            keras_factory = functools.partial(keras_step, config, batch)
            title = f"video {batch}x{t}x{h}x{w}, audio 2x{batch}x{frames}x{mels}"
        else:
            examples = max(1, batch // TSSL.num_views)
            clips = examples * TSSL.num_views
            torch_factory = functools.partial(torch_tssl_step, config, examples)
            keras_factory = functools.partial(keras_tssl_step, config, examples)
            title = (
                f"{examples} examples x {TSSL.num_views} views: video {clips}x{t}x{h}x{w}, "
                f"audio {clips}x{frames}x{mels}"
            )
        steps = variants(args, jits, torch_factory, keras_factory)
        report(
            name, title, bench_common.measure(steps, clips, args.steps, args.rounds, args.warmup)
        )


def main() -> None:
    args = parse_args()
    bench_common.import_frameworks(
        args.threads, args.onednn, with_torch=not args.no_torch, tf_inter_op=args.tf_inter_op
    )
    jits = {"off": [False], "on": [True], "both": [False, True]}[args.xla]
    for task in ("avts", "tssl"):
        if args.task in (task, "both"):
            run_task(task, args, jits)


if __name__ == "__main__":
    main()
