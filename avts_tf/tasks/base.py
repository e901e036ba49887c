"""The task contract: what a self-supervised method brings to the trainer.

A task is a Keras layer, held by ``AVTSModel`` next to the two towers (like TF Model
Garden's ``Task``, with the state of keras-io's NNCLR living in the model). It provides:

* **its examples**: ``train_example`` and ``eval_example`` turn one decoded record into
  one example (which windows to cut, with their timestamps), using the shared decoding of
  ``avts_tf.data.clips.Clips``; ``batch_examples`` may add what needs the whole batch
  (for example the audio of the next example). The reader calls them
  (``avts_tf.data.pipeline``); the trainer never looks inside an example.
* **its loss**: ``compute`` returns this replica's share of the step's loss, divided by
  the number of examples over all replicas (``global_batch``), so gradients summed over
  replicas equal a one-device run.
* **its metrics** (``reported_metrics``), with additive states, and its ``headline``
  metric: the one ``tools/train.py`` prints last as ``<name>: 0.xxx``.
* **optional state** (non-trainable variables such as a feature queue, created with
  ``add_state``): ``compute`` may return per-example values as a third element; after
  each optimizer step the model gathers them over all replicas, in global batch order,
  and calls ``after_step`` on every replica with the same values, so the state stays
  identical everywhere. Such variables are weights of the model, so checkpoints save and
  restore them.
* **whole-set metrics** (``dataset_metrics``): what needs every evaluation example at
  once, such as retrieval among all held-out videos.
* **its evaluation hooks**: the space it compares audio with video in (``shared_space``),
  the task that scores synchronization (``sync_task``), and the training controls it
  supports with the metrics each should bring to chance (``controls``,
  ``control_metrics``). ``avts_tf.evaluation`` asks these and knows no concrete task.

A loss may contrast this replica's examples with the whole step's through
``gather_over_replicas`` (differentiable), so several replicas compute what one device
does.

Tasks are registered in ``avts_tf.registry.OBJECTIVES`` (gin: ``@objectives.<name>``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from avts_tf.data.pipeline import AlignedClips

Batch = dict[str, tf.Tensor]


def replica_id() -> tf.Tensor:
    """Index of this replica in its sync group (0 outside a strategy), int32."""
    context = tf.distribute.get_replica_context()
    if context is None:
        return tf.constant(0, tf.int32)
    return tf.cast(context.replica_id_in_sync_group, tf.int32)


def num_replicas() -> int:
    """Replicas in sync of the current strategy."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def local_batch_size(batch: Any) -> tf.Tensor:
    """Examples of this replica's share of the step (int32 scalar; may be 0)."""
    return tf.shape(tf.nest.flatten(batch)[0])[0]


def global_batch_size(batch: Any) -> tf.Tensor:
    """Examples in this step over all replicas (an all-reduce under several replicas).

    Call it in a replica context outside any XLA-compiled function (collectives cannot be
    compiled there); ``AVTSModel`` does and passes the result to ``Task.compute``.
    """
    size = local_batch_size(batch)
    if num_replicas() > 1:
        # In float32: collective all-reduces of int32 (host) tensors fail under
        # MultiWorkerMirroredStrategy ("destinations can not be empty").
        total = tf.distribute.get_replica_context().all_reduce("sum", tf.cast(size, tf.float32))
        size = tf.cast(tf.round(total), tf.int32)
    return size


def gather_over_replicas(values: Batch) -> tuple[Batch, tf.Tensor]:
    """``values`` of every replica in global batch order, and this replica's offset in it.

    Differentiable (the gradient of each replica's share is the sum over replicas of the
    gradients of the gathered tensor at its rows), so a loss can contrast this replica's
    examples with the whole step's, as one device would. Identity on one device. A task
    that calls it in ``compute`` sets ``Task.gathers_over_replicas``.

    Returns:
        ``(gathered, offset)``: tensors with the step's examples on their first axis, and
        the int32 index of this replica's first example among them.
    """
    if num_replicas() == 1:
        return values, tf.constant(0, tf.int32)
    context = tf.distribute.get_replica_context()
    # Sizes in float32: int32 collectives fail under MultiWorkerMirroredStrategy.
    size = tf.cast(local_batch_size(values), tf.float32)
    sizes = context.all_gather(tf.reshape(size, [1]), axis=0)
    offset = tf.reduce_sum(tf.where(tf.range(tf.shape(sizes)[0]) < replica_id(), sizes, 0.0))
    gathered = {}
    for dtype in {value.dtype for value in values.values()}:  # One collective per dtype.
        group = {key: value for key, value in values.items() if value.dtype == dtype}
        gathered.update(context.all_gather(group, axis=0))
    return gathered, tf.cast(tf.round(offset), tf.int32)


def unpack_compute(result: tuple) -> tuple[tf.Tensor, Batch, Batch]:
    """``Task.compute``'s ``(loss, logs)`` or ``(loss, logs, values)`` as three parts."""
    if len(result) == 2:
        return result[0], result[1], {}
    loss, logs, values = result
    return loss, logs, values


@dataclasses.dataclass(frozen=True)
class Projections:
    """The trained heads taking each tower's output into the space a task compares them in.

    Attributes:
        name: What the space is, for reports.
        video: Maps the video tower's output.
        audio: Maps the audio tower's output.
        why: Why the heads' trained weights are needed (a refusal names it when the run
            has no checkpoint to take them from).
    """

    name: str
    video: keras.layers.Layer
    audio: keras.layers.Layer
    why: str


@dataclasses.dataclass(frozen=True)
class ControlledMetric:
    """A held-out metric a training control may bring to chance.

    Attributes:
        name: The metric, as ``eval.json`` names it.
        title: Its short column title in reports.
        chance: Its chance level on the run's held-out set.
    """

    name: str
    title: str
    chance: float


class Task(AlignedClips, keras.layers.Layer):
    """Base class of tasks (see the module docstring for the contract).

    Subclasses implement ``compute`` and usually ``train_example``; the defaults
    (``avts_tf.data.pipeline.AlignedClips``, the reader's ``ExampleSource``) cut one aligned
    video clip and audio window per record, evenly spaced clips in evaluation.

    Attributes:
        headline: Name of the metric ``tools/train.py`` prints last (default: the loss).
    """

    headline: str = "loss"
    #: ``compute`` calls :func:`gather_over_replicas` in training; the model then runs the
    #: step's loss outside per-replica XLA (collectives cannot be compiled there).
    gathers_over_replicas: bool = False
    #: The shortest stretch of a record this task cuts an example from, in 1x clip windows
    #: (the temporal task's slowest view speed). The pipelines skip shorter records, and a
    #: run whose split holds none is refused before training.
    window_multiple: int = 1
    #: Training examples on each replica must be a multiple of this (the temporal task's
    #: controls that pair the two halves of a batch need 2); checked before training.
    batch_multiple: int = 1
    #: The training control the task runs under (a key of :meth:`controls`).
    control: str = "none"

    # -- loss, metrics, state ----------------------------------------------------------
    def compute(
        self,
        model: keras.Model,
        batch: Batch,
        training: bool,
        step: tf.Tensor,
        global_batch: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, Batch] | tuple[tf.Tensor, Batch, Batch]:
        """Loss share of this replica, scalars to log, and optional values to gather.

        Args:
            model: Holds ``video_tower`` and ``audio_tower`` (call them as layers).
            batch: This replica's share of the batch.
            training: Whether the towers run in training mode.
            step: The optimizer step (int64 scalar).
            global_batch: Examples of this step over all replicas (int32 scalar); default
                :func:`global_batch_size` of ``batch``. Replicas may hold unequal shares
                (the last evaluation batch), or none.

        Returns:
            ``(loss, logs)`` or ``(loss, logs, values)``: ``loss`` is this replica's sum
            divided by the global count (0 when the step has no examples); ``logs``
            scalars that are not metrics; ``values`` per-example tensors (first axis:
            this replica's examples) that training passes to ``after_step``, gathered
            over every replica.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement compute().")

    def after_step(self, values: Batch, applied: tf.Tensor) -> None:
        """Updates the state after an optimizer step, identically on every replica.

        Args:
            values: What ``compute`` returned as ``values``, gathered over all replicas
                in global batch order.
            applied: Whether the step was applied (False when a ``mixed_float16`` step
                overflowed and was skipped); state should then stay as it was.
        """

    def add_state(
        self, name: str, shape: tuple[int, ...], dtype: str = "float32", initializer: str = "zeros"
    ) -> keras.Variable:
        """A non-trainable state variable, saved in checkpoints, changed by ``after_step``.

        Every replica assigns it the same value in ``after_step`` (from gathered values),
        so replica 0's value is the variable's value under any strategy.
        """
        return self.add_weight(
            name=name,
            shape=shape,
            dtype=dtype,
            initializer=initializer,
            trainable=False,
            aggregation="only_first_replica",
        )

    def build_head(self, video_dim: int, audio_dim: int) -> None:
        """Creates trainable heads once the towers' output sizes are known."""

    def dataset_metrics(self, model: keras.Model, dataset: tf.data.Dataset) -> dict[str, float]:
        """Metrics of the whole evaluation set that no per-batch state can hold (retrieval).

        Called once after ``model.evaluate`` with the evaluation batches (this task's
        examples); the results join ``eval.json``. Default: none.
        """
        del model, dataset
        return {}

    def reported_metrics(self, training: bool) -> list[keras.metrics.Metric]:
        """Metrics reported in training (``True``) or evaluation (``False``)."""
        del training
        return []

    def stage(self, step: int) -> int:
        """Stage of the task's schedule at ``step`` (a curriculum's), recorded in checkpoints."""
        del step
        return 0

    # -- evaluation hooks ----------------------------------------------------------------
    def parts(self) -> list[Task]:
        """The tasks this one is made of: itself (several for a ``MultiTask``)."""
        return [self]

    def shared_space(self, model: keras.Model) -> Projections | None:
        """The heads mapping ``model``'s towers into the space this task compares them in.

        ``None`` (the default): the task compares the towers' outputs directly. The heads
        returned are this task's own layers, so weights loaded into the model later reach
        them.
        """
        del model
        return None

    def sync_task(self) -> Task | None:
        """The task that scores audio-visual synchronization (``avts-eval-sync``), if any."""
        return None

    def controls(self) -> Mapping[str, tuple[str, ...]]:
        """Each training control this task supports -> the metrics it brings to chance.

        Controls include ``"none"``; the metrics are names of :meth:`control_metrics`.
        Default: none.
        """
        return {}

    def control_metrics(self, held_out_videos: int) -> tuple[ControlledMetric, ...]:
        """The held-out metrics a control study reports, in table order, with chance.

        Args:
            held_out_videos: Distinct videos in the run's held-out split (the chance of
                retrieval among them).
        """
        del held_out_videos
        return ()

    def call(self, inputs):  # noqa: D102
        return inputs
