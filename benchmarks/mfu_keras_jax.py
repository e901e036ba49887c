"""MFU of the AVTS train step at paper scale, bf16 + XLA, on an accelerator with JAX.

    python benchmarks/mfu_keras_jax.py --towers DIR [--batch 32,64] [--steps 20]
        [--peak_tflops 989.5]

The accelerator machines of this workplace have JAX but no TensorFlow (and no network), so this
runs the library's towers through Keras 3's JAX backend: ``DIR`` holds the towers' stock-layer
architectures (``video.json``, ``audio.json``, ``shapes.json``), exported on a TensorFlow
machine by ``--export DIR`` (``avts_tf.portable.portable_tower``: the same layers the saved
``.keras`` towers use). The step is the AVTS step: the video tower on ``B`` clips, the audio tower
on ``B`` in-sync and ``B`` out-of-sync windows, the margin contrastive loss on squared
distances, gradients and an SGD-with-momentum update, all jitted (XLA), under the
``mixed_bfloat16`` policy (bf16 compute, float32 weights). FLOPs per step: XLA's cost
analysis of the forward and backward pass for one example on the CPU backend (on a GPU it leaves
out the convolutions given to cuDNN), times the batch; MFU = FLOPs / step time / the chip's peak
dense bf16 rate.

``--peer`` also times the same step in PyTorch (torchvision's r2plus1d_18 and a one-channel
resnet18, the same architectures; bf16 autocast, channels-last, ``torch.compile``), in rounds
interleaved with the Keras-JAX step, and prints the speed ratio.

Measurements: ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def export(out: Path) -> None:
    """Writes the paper-scale towers' stock-layer architectures (needs TensorFlow)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import avts_tf.backbones  # noqa: F401  (registers)
    from avts_tf.data.audio_features import LogMelSpec
    from avts_tf.data.pipeline import ClipSpec
    from avts_tf.portable import portable_tower
    from avts_tf.registry import BACKBONES

    out.mkdir(parents=True, exist_ok=True)
    spec = ClipSpec(num_frames=16, crop_size=112, log_mel=LogMelSpec(mel_bins=80))
    shapes = {"video": list(spec.video_shape()), "audio": list(spec.audio_shape(25.0))}
    for name, backbone in (("video", "r2plus1d_18"), ("audio", "audio_resnet18")):
        tower = BACKBONES.build(backbone, input_shape=tuple(shapes[name]))
        (out / f"{name}.json").write_text(portable_tower(tower).to_json())
    (out / "shapes.json").write_text(json.dumps(shapes))


def _with_policy(config, policy: str):
    """The config with every layer's dtype policy replaced by ``policy``."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config.get("config", {}), "name": policy}}
        return {key: _with_policy(value, policy) for key, value in config.items()}
    if isinstance(config, list):
        return [_with_policy(v, policy) for v in config]
    return config


def measure(
    towers: Path, batches: list[int], steps: int, peak_tflops: float, peer: bool = False
) -> None:
    os.environ["KERAS_BACKEND"] = "jax"
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np
    import optax

    keras.config.set_dtype_policy("mixed_bfloat16")
    shapes = json.loads((towers / "shapes.json").read_text())
    models = {}
    for name in ("video", "audio"):
        config = _with_policy(json.loads((towers / f"{name}.json").read_text()), "mixed_bfloat16")
        models[name] = keras.models.model_from_json(json.dumps(config))
    video, audio = models["video"], models["audio"]
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; keras {keras.__version__}; "
        f"params video {video.count_params():,} audio {audio.count_params():,}; "
        f"layer policies {sorted({layer.dtype_policy.name for layer in video.layers})}",
        flush=True,
    )
    optimizer = optax.sgd(0.01, momentum=0.9)
    margin = 1.0

    def loss_fn(trainable, non_trainable, batch):
        (vt, at), (vn, an) = trainable, non_trainable
        ev, vn = video.stateless_call(vt, vn, batch["video"], training=True)
        audio_in = jnp.concatenate([batch["audio"], batch["audio_negative"]], 0)
        ea, an = audio.stateless_call(at, an, audio_in, training=True)
        ev, ea = ev.astype(jnp.float32), ea.astype(jnp.float32)
        b = ev.shape[0]
        d2 = jnp.sum((jnp.concatenate([ev, ev], 0) - ea) ** 2, -1)
        dist = jnp.sqrt(d2 + 1e-12)
        loss = jnp.mean(jnp.concatenate([d2[:b], jnp.maximum(margin - dist[b:], 0.0) ** 2]))
        return loss, (vn, an)

    @jax.jit
    def step(trainable, non_trainable, opt_state, batch):
        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, batch
        )
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), non_trainable, opt_state, loss

    def inputs(b: int, rng) -> dict:
        return {
            "video": rng.random([b, *shapes["video"]], np.float32),
            "audio": rng.standard_normal([b, *shapes["audio"]], np.float32),
            "audio_negative": rng.standard_normal([b, *shapes["audio"]], np.float32),
        }

    # XLA's cost analysis on a GPU leaves out the convolutions it hands to cuDNN (custom
    # calls), so the FLOPs are counted on the CPU backend for one example, where every
    # convolution is an HLO op, and scaled by the batch (the optimizer's share is < 0.1%).
    cpu = jax.devices("cpu")[0]
    one = jax.device_put(
        (
            (
                [v.value for v in video.trainable_variables],
                [v.value for v in audio.trainable_variables],
            ),
            (
                [v.value for v in video.non_trainable_variables],
                [v.value for v in audio.non_trainable_variables],
            ),
            inputs(1, np.random.default_rng(0)),
        ),
        cpu,
    )
    cost = (
        jax.jit(lambda t, n, x: jax.value_and_grad(loss_fn, has_aux=True)(t, n, x))
        .lower(*one)
        .compile()
        .cost_analysis()
    )
    per_example = float((cost[0] if isinstance(cost, list) else cost)["flops"])
    print(
        f"FLOPs per example (forward and backward, XLA on CPU): {per_example / 1e9:.1f} G",
        flush=True,
    )

    def jax_runner(b: int):
        """Compiles the jitted step at batch ``b``; returns a function running n steps."""
        batch = {k: jnp.asarray(v) for k, v in inputs(b, np.random.default_rng(0)).items()}
        state = [
            (
                [v.value for v in video.trainable_variables],
                [v.value for v in audio.trainable_variables],
            ),
            (
                [v.value for v in video.non_trainable_variables],
                [v.value for v in audio.non_trainable_variables],
            ),
        ]
        state.append(optimizer.init(state[0]))
        compiled = step.lower(*state, batch).compile()

        def run(n: int) -> float:
            loss = None
            for _ in range(n):
                *state[:], loss = compiled(*state, batch)
            jax.block_until_ready(loss)
            return float(loss)

        return run

    runners = {"keras-jax": jax_runner}
    if peer:
        runners["torch"] = lambda b: torch_runner(shapes, b, margin)
    for b in batches:
        flops = b * per_example
        compiled = {}
        for name, make in runners.items():
            start = time.perf_counter()
            compiled[name] = make(b)
            compiled[name](3)  # warm-up
            print(f"  batch {b} {name}: ready in {time.perf_counter() - start:.1f} s", flush=True)
        times = {name: [] for name in runners}
        losses = {}
        for _ in range(3):  # interleaved rounds
            for name, run in compiled.items():
                start = time.perf_counter()
                losses[name] = run(steps)
                times[name].append((time.perf_counter() - start) / steps)
        for name, values in times.items():
            best, worst = min(values), max(values)
            print(
                f"  batch {b} {name}: {best * 1e3:.1f}-{worst * 1e3:.1f} ms/step, "
                f"{b / worst:.0f}-{b / best:.0f} clips/s, "
                f"{flops / worst / 1e12:.0f}-{flops / best / 1e12:.0f} TFLOP/s, "
                f"MFU {flops / worst / 1e12 / peak_tflops:.3f}-"
                f"{flops / best / 1e12 / peak_tflops:.3f} of {peak_tflops:g} TFLOP/s "
                f"(loss {losses[name]:.4f})",
                flush=True,
            )
        if peer:
            ratios = [t / j for j, t in zip(times["keras-jax"], times["torch"], strict=True)]
            print(
                f"  batch {b}: keras-jax speed / torch speed {min(ratios):.2f}-{max(ratios):.2f}",
                flush=True,
            )


def torch_runner(shapes: dict, b: int, margin: float):
    """The same AVTS step in PyTorch: torchvision's r2plus1d_18 and resnet18 (one input
    channel) with their classifiers removed (512-d pooled outputs, as the library's towers),
    bf16 autocast, channels-last, ``torch.compile``, SGD with momentum."""
    import torch
    import torchvision

    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    video = torchvision.models.video.r2plus1d_18()
    video.fc = torch.nn.Identity()
    audio = torchvision.models.resnet18()
    audio.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    audio.fc = torch.nn.Identity()
    video = video.to(device, memory_format=torch.channels_last_3d)
    audio = audio.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([*video.parameters(), *audio.parameters()], lr=0.01, momentum=0.9)
    generator = torch.Generator(device="cpu").manual_seed(0)
    t, h, w, c = shapes["video"]
    frames, bins, _ = shapes["audio"]
    clips = torch.rand([b, c, t, h, w], generator=generator).to(
        device, memory_format=torch.channels_last_3d
    )
    windows = torch.randn([2 * b, 1, frames, bins], generator=generator).to(
        device, memory_format=torch.channels_last
    )

    def loss_fn():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            ev = video(clips).float()
            ea = audio(windows).float()
        d2 = ((torch.cat([ev, ev]) - ea) ** 2).sum(-1)
        dist = torch.sqrt(d2 + 1e-12)
        return torch.cat([d2[:b], torch.clamp(margin - dist[b:], min=0.0) ** 2]).mean()

    compiled_loss = torch.compile(loss_fn)

    def run(n: int) -> float:
        loss = None
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            loss = compiled_loss()
            loss.backward()
            optimizer.step()
        torch.cuda.synchronize()
        return float(loss.detach())

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--towers", type=Path, required=True)
    parser.add_argument("--export", action="store_true", help="Write --towers (needs TF).")
    parser.add_argument("--batch", default="32,64")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--peer",
        action="store_true",
        help="Also time the same step in PyTorch, interleaved (a ratio).",
    )
    parser.add_argument(
        "--peak_tflops",
        type=float,
        default=989.5,
        help="Peak dense bf16 TFLOP/s (H100/H200 SXM: 989.5).",
    )
    args = parser.parse_args()
    if args.export:
        export(args.towers)
        return
    measure(
        args.towers,
        [int(b) for b in args.batch.split(",")],
        args.steps,
        args.peak_tflops,
        args.peer,
    )


if __name__ == "__main__":
    main()
