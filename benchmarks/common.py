"""Set-up and timing shared by the benchmarks that compare against PyTorch."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from types import ModuleType


def import_frameworks(
    threads: int, onednn: str, with_torch: bool, tf_inter_op: int = 0
) -> ModuleType:
    """Imports torch (optional) then TensorFlow with matching thread settings.

    ``onednn`` (``on``/``off``/``default``) must take effect before TensorFlow is imported,
    and torch(vision) must be imported before TensorFlow: the other order segfaults.
    Both frameworks get ``threads`` threads per op. ``tf_inter_op`` is how many
    independent TensorFlow ops may run at once: 0 is TensorFlow's default (one per core),
    which ``tools/train.py`` and Keras ``fit`` run with; 1 runs them one at a time, as
    PyTorch's eager step runs its ops.

    Returns:
        The ``tensorflow`` module.
    """
    if onednn != "default":
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if onednn == "on" else "0"
    if with_torch:
        import torch
        import torchvision.models.video  # noqa: F401

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(tf_inter_op)
    return tf


def measure(
    variants: dict[str, Callable[[], None]], batch: int, steps: int, rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Clips/s per variant and interleaved round (after warm-up steps each).

    PyTorch's oneDNN primitives take a few steps to settle, XLA compiles on the first.
    """
    for key, step in variants.items():
        start = time.perf_counter()
        for _ in range(warmup):  # trace / compile / allocate / create primitives
            step()
        print(f"  warm-up {key}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for key, step in variants.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            rates[key].append(steps * batch / (time.perf_counter() - start))
    return rates
