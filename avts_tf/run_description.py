"""``run.json``: what a training run's folder needs to be used without its gin config.

``avts_tf.train.run`` writes it into ``model_dir`` (chief only) before training starts, so
a run that crashed is described too. It holds the clip spec (with the log-mel settings),
the dataset and its fps, the splits, both towers (registry name, arguments, input shape),
the task as Keras serializes it, the headline metric and the run's main settings. The
evaluation code and the tools load runs from it (``avts_tf.evaluation.checkpoint``);
reading parses no gin.

Towers are described by the factory ``train.run`` was given: ``functools.partial``
keywords are kept, wrappers (gin's ``@backbones.<name>`` reference among them) are
unwrapped to the function registered in ``BACKBONES``, and when the factory came through
gin its bindings (in the reference's scope) are added. A factory that is not registered,
or has positional or non-JSON arguments, is recorded with ``name`` or ``kwargs`` null:
the run is still described, but its towers can then only be read from the saved
``.keras`` files, not rebuilt from a mid-training checkpoint.

Example ``run.json`` (shortened)::

    {"format_version": 1, "dataset": "/data/prepared", "fps": 8.0,
     "clip_spec": {"num_frames": 8, "crop_size": 32, ..., "log_mel": {"mel_bins": 40, ...}},
     "video_tower": {"name": "mc3_18", "kwargs": {"width": 16, ...},
                     "input_shape": [8, 32, 32, 3], "factory": "avts_tf...mc3_18"},
     "audio_tower": {...},
     "task": {"module": "avts_tf.tasks.sync.objectives", "class_name": "ContrastiveSync",
              "config": {"margin": 1.0, ...}, "registered_name": "avts_tf>ContrastiveSync"},
     "headline": "sync_accuracy", "train_split": "train", "eval_split": "test", ...}
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import gin
import keras
import tensorflow as tf
from absl import logging

from avts_tf import atomic, registry_imports  # noqa: F401  (rebuilds the library's parts)
from avts_tf.data.audio_features import LogMelSpec
from avts_tf.data.clips import ClipSpec
from avts_tf.errors import UserError
from avts_tf.registry import BACKBONES, Registry
from avts_tf.run_checks import CONFIG_FILENAME

FILENAME = "run.json"
FORMAT_VERSION = 1


def _jsonable(value: Any) -> Any | None:
    """``value`` as JSON gives it back (tuples become lists); None if it is not JSON."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def _gin_scope(fn: Callable[..., Any]) -> list[str]:
    # gin's scoped reference (``@scope/backbones.x``) wraps the configurable in a closure
    # over ``scope_components``; the only way to read it back.
    cells = getattr(fn, "__closure__", None) or ()
    names = getattr(getattr(fn, "__code__", None), "co_freevars", ())
    for name, cell in zip(names, cells, strict=False):
        if name == "scope_components":
            try:
                return [str(s) for s in cell.cell_contents or ()]
            except (ValueError, TypeError):  # an empty cell, not gin's
                return []
    return []


@dataclasses.dataclass(frozen=True)
class Tower:
    """How a tower was built.

    Attributes:
        name: Its factory's name in ``BACKBONES`` (None: not a registered factory).
        kwargs: The factory's arguments besides ``input_shape`` (None: unknown).
        input_shape: The input shape it was built for (no batch axis).
        factory: ``module.qualname`` of the factory, for the reader.
    """

    name: str | None
    kwargs: dict[str, Any] | None
    input_shape: tuple[int | None, ...]
    factory: str

    @classmethod
    def of_factory(
        cls, factory: Callable[..., Any], input_shape, registry: Registry = BACKBONES
    ) -> Tower:
        """Describes ``factory(input_shape=input_shape)`` (see the module docstring)."""
        kwargs: dict[str, Any] = {}
        positional = False
        while isinstance(factory, functools.partial):
            positional = positional or bool(factory.args)
            kwargs = {**factory.keywords, **kwargs}
            factory = factory.func
        fn, scope = factory, []
        for _ in range(16):  # wrappers (gin's among them) down to the registered function
            if not hasattr(fn, "__wrapped__"):
                break
            scope = scope or _gin_scope(fn)
            fn = fn.__wrapped__
        origin = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
        name = next((n for n in registry.list() if registry.get(n) is fn), None)
        if name is not None and fn is not factory:  # called through gin: its bindings apply
            selector = "/".join([*scope, f"{registry.kind}.{name}"])
            try:
                kwargs = {**gin.get_bindings(selector), **kwargs}
            except ValueError:
                pass  # gin does not know it: a plain decorator
        kwargs.pop("input_shape", None)
        described = None if positional or name is None else _jsonable(kwargs)
        shape = tuple(None if d is None else int(d) for d in input_shape)
        return cls(name, described, shape, origin)

    def build(self) -> keras.Model:
        """The tower, newly initialized, from ``BACKBONES``.

        Raises:
            UserError: If the tower was not built by a registered factory with known
                arguments.
        """
        if self.name is None or self.kwargs is None:
            raise UserError(
                f"the run's tower {self.factory} is not a registered BACKBONES factory with "
                f"JSON arguments, so it cannot be rebuilt; use the run's saved .keras towers"
            )
        try:
            return BACKBONES.build(self.name, input_shape=self.input_shape, **self.kwargs)
        except KeyError as err:
            raise UserError(str(err.args[0])) from None

    def to_json(self) -> dict[str, Any]:  # noqa: D102
        return {
            "name": self.name,
            "kwargs": self.kwargs,
            "input_shape": list(self.input_shape),
            "factory": self.factory,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tower:  # noqa: D102
        return cls(data["name"], data["kwargs"], tuple(data["input_shape"]), data["factory"])


def _serialize_task(task: keras.layers.Layer) -> dict[str, Any] | None:
    try:
        config = _jsonable(keras.saving.serialize_keras_object(task))
    except (NotImplementedError, TypeError, ValueError) as err:
        config = None
        reason = f"{type(err).__name__}: {err}"
    else:
        reason = "its config is not JSON"
    if config is None:
        logging.warning(
            "The task %s cannot be serialized (%s); run.json records no task.",
            type(task).__name__,
            reason,
        )
    return config


def _clip_spec_from_json(data: Mapping[str, Any]) -> ClipSpec:
    fields = dict(data)
    fields["log_mel"] = LogMelSpec(**fields["log_mel"])
    return ClipSpec(**fields)


@dataclasses.dataclass(frozen=True)
class RunDescription:
    """The content of a run folder's ``run.json`` (see the module docstring).

    Attributes:
        dataset: The prepared dataset trained on.
        fps: Its frame rate (sets the audio input length).
        clip_spec: Clip shape and log-mel settings of the towers' inputs.
        train_split: Split trained on.
        eval_split: Split of the final evaluation.
        eval_batch_size: Batch size of the final evaluation.
        eval_clips_per_video: Clips per held-out video in the final evaluation.
        video_tower: How the video tower was built.
        audio_tower: How the audio tower was built.
        task: The task, as ``keras.saving.serialize_keras_object`` gives it (None: it
            could not be serialized).
        headline: The task's headline metric.
        precision: ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.
        seed: The run's seed.
        batch_size: Global training batch size.
        train_steps: Training batches.
        ingest: How the training media was decoded (``fps``, ``short_side``,
            ``sample_rate``, ``jpeg_quality``, ...: the dataset's ingestion settings), so a
            new file can be turned into the same inputs (``avts_tf.load_towers``); ``None``
            in runs written before it was recorded.
        format_version: Version of this format; a reader refuses any other.
    """

    dataset: str
    fps: float
    clip_spec: ClipSpec
    train_split: str
    eval_split: str
    eval_batch_size: int
    eval_clips_per_video: int
    video_tower: Tower
    audio_tower: Tower
    task: dict[str, Any] | None
    headline: str
    precision: str
    seed: int
    batch_size: int
    train_steps: int
    ingest: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    @classmethod
    def of_run(
        cls,
        *,
        video_factory: Callable[..., Any],
        audio_factory: Callable[..., Any],
        task: keras.layers.Layer,
        clip_spec: ClipSpec,
        fps: float,
        dataset: str | os.PathLike,
        **settings: Any,
    ) -> RunDescription:
        """Describes a run from what ``train.run`` built.

        Args:
            video_factory: The video tower's factory (called with ``input_shape``).
            audio_factory: The audio tower's factory.
            task: The built task.
            clip_spec: The run's clip spec.
            fps: The dataset's frame rate.
            dataset: The prepared dataset (a relative local path is made absolute).
            **settings: The other fields (``train_split``, ``eval_split``, ``seed``, ...).
        """
        dataset = os.fspath(dataset)
        if "://" not in dataset:
            dataset = os.path.abspath(dataset)
        return cls(
            dataset=dataset,
            fps=float(fps),
            clip_spec=clip_spec,
            video_tower=Tower.of_factory(video_factory, clip_spec.video_shape()),
            audio_tower=Tower.of_factory(audio_factory, clip_spec.audio_shape(fps)),
            task=_serialize_task(task),
            headline=task.headline,
            **settings,
        )

    # -- the task and the towers ---------------------------------------------------------
    def build_task(self, **overrides: Any) -> keras.layers.Layer:
        """The run's task, newly built from its config (``overrides`` replace entries).

        Raises:
            UserError: If the run recorded no task, or it cannot be deserialized.
        """
        if self.task is None:
            raise UserError("the run's task could not be serialized; run.json records none")
        serialized = dict(self.task, config={**self.task["config"], **overrides})
        try:
            return keras.saving.deserialize_keras_object(serialized)
        except (TypeError, ValueError, ImportError) as err:
            raise UserError(
                f"cannot rebuild the run's task {self.task.get('class_name')}: {err}"
            ) from None

    # -- JSON ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict of every field."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["clip_spec"] = dataclasses.asdict(self.clip_spec)
        data["video_tower"] = self.video_tower.to_json()
        data["audio_tower"] = self.audio_tower.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = FILENAME) -> RunDescription:
        """Reads ``to_json``'s dict back; ``where`` names the file in errors.

        Raises:
            UserError: If the format version is not this one, or fields are missing.
        """
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise UserError(
                f"{where} has format_version {version!r}; this avts_tf reads version "
                f"{FORMAT_VERSION}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        data = {"ingest": None, **data}  # runs written before it was recorded
        if set(data) != names:
            missing, unknown = sorted(names - set(data)), sorted(set(data) - names)
            raise UserError(
                f"{where} is not a run description (missing {missing}, unknown {unknown})"
            )
        fields = dict(data)
        try:
            fields["clip_spec"] = _clip_spec_from_json(data["clip_spec"])
            fields["video_tower"] = Tower.from_json(data["video_tower"])
            fields["audio_tower"] = Tower.from_json(data["audio_tower"])
        except (KeyError, TypeError) as err:
            raise UserError(f"{where} is not a run description: {err}") from None
        return cls(**fields)

    def write(self, model_dir: str | os.PathLike) -> None:
        """Writes ``<model_dir>/run.json`` atomically (local or ``gs://``)."""
        atomic.write_json(os.path.join(os.fspath(model_dir), FILENAME), self.to_json())

    @staticmethod
    def exists(model_dir: str | os.PathLike) -> bool:
        """Whether ``model_dir`` holds a ``run.json``."""
        return tf.io.gfile.exists(os.path.join(os.fspath(model_dir), FILENAME))

    @classmethod
    def read(cls, model_dir: str | os.PathLike) -> RunDescription:
        """Reads ``<model_dir>/run.json`` (local or ``gs://``).

        Raises:
            UserError: If it is missing (a run written before ``run.json`` existed, or not
                a run folder), unreadable, or of another format version.
        """
        folder = os.fspath(model_dir)
        path = os.path.join(folder, FILENAME)
        if not tf.io.gfile.exists(path):
            if not any(
                tf.io.gfile.exists(os.path.join(folder, name))
                for name in (CONFIG_FILENAME, "checkpoints")
            ):
                raise UserError(
                    f"{folder} is not a training run's model_dir (no {FILENAME}, "
                    f"{CONFIG_FILENAME} or checkpoints); give the --model_dir of an avts-train "
                    "run"
                )
            raise UserError(
                f"{folder} has no {FILENAME} (train.run writes it since "
                f"avts_tf 0.1, format 1); re-run its training command, which resumes from "
                f"the checkpoints and writes it, or pass the .keras tower files"
            )
        try:
            with tf.io.gfile.GFile(path, "r") as f:
                data = json.loads(f.read())
        except (ValueError, tf.errors.OpError) as err:
            raise UserError(f"cannot read {path}: {err}") from None
        if not isinstance(data, dict):
            raise UserError(f"{path} is not a run description")
        return cls.from_json(data, where=path)
