"""Stopping cleanly when a scheduler or a user asks: SIGTERM and SIGINT.

Clouds and schedulers (Kubernetes, Slurm, spot VMs) send SIGTERM and allow a grace
period; a user presses Ctrl-C. :class:`PreemptionWatcher` turns either signal into a
request, and :class:`StopOnPreemption` ends training at the next batch end with a
checkpoint at that batch, so re-running the same command resumes exactly there. Under
several workers the workers agree on the batch with one all-reduce per batch (as
``tf.distribute.experimental.PreemptionCheckpointHandler`` agrees through the
coordination service). A second signal while stopping restores the default behaviour
(a second Ctrl-C ends the process at once).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf
from absl import logging

from avts_tf.callbacks import read_index

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionWatcher:
    """Records SIGTERM / SIGINT as a stop request while installed (a context manager).

    Handlers are installed only from the main thread (Python's rule); elsewhere the
    watcher stays passive and ``requested`` stays False.
    """

    def __init__(self, signals: Sequence[int] = DEFAULT_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a signal arrived."""
        return self.received is not None

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))  # second: default
        logging.warning(
            "Received %s; stopping after the current batch with a checkpoint.",
            signal.Signals(signum).name,
        )

    def __enter__(self) -> PreemptionWatcher:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class StopOnPreemption(keras.callbacks.Callback):
    """At the first batch end after a stop request: checkpoint there and stop ``fit``.

    Place it right after the :class:`~avts_tf.callbacks.StepCheckpoint` it saves with.

    Args:
        watcher: The signal watcher.
        checkpoint: The run's ``StepCheckpoint`` (its batch count and ``save``).
        strategy: The run's strategy; with several workers the request is all-reduced so
            every worker stops after the same batch.
    """

    def __init__(
        self,
        watcher: PreemptionWatcher,
        checkpoint: Any,
        strategy: tf.distribute.Strategy | None = None,
    ) -> None:
        super().__init__()
        self.watcher = watcher
        self.checkpoint = checkpoint
        multi_worker = strategy is not None and strategy.extended._in_multi_worker_mode()  # noqa: SLF001
        self._sum = _summed_over_workers(strategy) if multi_worker else None
        self.preempted_batch: int | None = None

    def _agreed(self) -> bool:
        if self._sum is None:
            return self.watcher.requested
        return bool(self._sum(tf.constant(1.0 if self.watcher.requested else 0.0)) > 0)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        if self.preempted_batch is not None or not self._agreed():
            return
        if self.checkpoint.nonfinite_batch is None:
            saved = [c.batches for c in read_index(self.checkpoint.directory)]
            if self.checkpoint.batches not in saved:
                self.checkpoint.save()
        self.preempted_batch = self.checkpoint.batches
        self.model.stop_training = True


def _summed_over_workers(strategy: tf.distribute.Strategy) -> Any:
    """A compiled ``flag -> sum of every replica's flag`` (one small all-reduce)."""

    @tf.function
    def summed(flag: tf.Tensor) -> tf.Tensor:
        per_replica = strategy.run(tf.identity, args=(flag,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return summed
