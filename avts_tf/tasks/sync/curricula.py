"""Curriculum schedules: training step -> mixture of negative kinds.

A schedule is a pure function of the optimizer step, evaluated inside ``train_step``
from ``optimizer.iterations``, so a resumed run is in the right stage without extra
state. Mixtures are probabilities over ``samplers.NEGATIVE_TYPES``
(``easy``, ``hard``, ``super_hard``).

The paper's recipe (AVTS, Korbar et al. 2018): easy negatives only for epochs 1-50, then
75% easy / 25% hard for epochs 51-90 -- ``StepSwitch(boundaries=[50 * steps_per_epoch],
mixtures=[{"easy": 1}, {"easy": 0.75, "hard": 0.25}])``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import tensorflow as tf

from avts_tf.registry import CURRICULA
from avts_tf.tasks.sync.samplers import NEGATIVE_TYPES

MixtureLike = Mapping[str, float] | Sequence[float]


def as_mixture(value: MixtureLike) -> list[float]:
    """Normalised probabilities over ``NEGATIVE_TYPES`` from a mapping or a sequence.

    Raises:
        ValueError: On unknown kinds, negative weights, a wrong length or an all-zero mixture.
    """
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(NEGATIVE_TYPES))
        if unknown:
            raise ValueError(
                f"Unknown negative kind(s) {unknown} in mixture {dict(value)}; "
                f"valid kinds: {', '.join(NEGATIVE_TYPES)}."
            )
        weights = [float(value.get(kind, 0.0)) for kind in NEGATIVE_TYPES]
    else:
        weights = [float(w) for w in value]
        if len(weights) != len(NEGATIVE_TYPES):
            raise ValueError(
                f"A mixture sequence needs {len(NEGATIVE_TYPES)} weights "
                f"({', '.join(NEGATIVE_TYPES)}), got {weights}."
            )
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"Mixture weights must be >= 0 and not all zero, got {weights}.")
    total = sum(weights)
    return [w / total for w in weights]


class Curriculum(abc.ABC):
    """A schedule of negative mixtures."""

    @abc.abstractmethod
    def mixture(self, step: tf.Tensor) -> tf.Tensor:
        """Probabilities ``[len(NEGATIVE_TYPES)]`` (float32) at optimizer step ``step``."""

    @abc.abstractmethod
    def stages(self) -> list[list[float]]:
        """The distinct mixtures the schedule passes through (for checks and logs)."""

    def kinds(self) -> set[str]:
        """Negative kinds drawn with non-zero probability at some step."""
        return {
            kind
            for mixture in self.stages()
            for kind, p in zip(NEGATIVE_TYPES, mixture, strict=True)
            if p > 0
        }

    def stage(self, step: tf.Tensor) -> tf.Tensor:
        """Index of the curriculum stage at ``step`` (0 for single-stage schedules)."""
        del step
        return tf.constant(0, tf.int32)

    def get_config(self) -> dict:
        """Constructor arguments (for logging and ``operative_config``)."""
        return {}


@CURRICULA.register("constant")
class ConstantMixture(Curriculum):
    """The same mixture at every step (the paper's single-stage runs).

    Args:
        mixture: Mapping such as ``{"easy": 0.75, "hard": 0.25}`` or three weights.
    """

    def __init__(self, mixture: MixtureLike = (1.0, 0.0, 0.0)) -> None:
        self._mixture = as_mixture(mixture)

    def mixture(self, step):  # noqa: D102
        del step
        return tf.constant(self._mixture, tf.float32)

    def stages(self):  # noqa: D102
        return [self._mixture]

    def get_config(self):  # noqa: D102
        return {"mixture": dict(zip(NEGATIVE_TYPES, self._mixture, strict=True))}


@CURRICULA.register("step_switch")
class StepSwitch(Curriculum):
    """Piecewise-constant mixtures switched at step boundaries.

    Args:
        boundaries: Increasing steps at which the next mixture starts.
        mixtures: ``len(boundaries) + 1`` mixtures.
    """

    def __init__(self, boundaries: Sequence[int], mixtures: Sequence[MixtureLike]) -> None:
        self.boundaries = [int(b) for b in boundaries]
        if len(mixtures) != len(self.boundaries) + 1:
            raise ValueError(
                f"step_switch needs len(boundaries) + 1 mixtures: got {len(self.boundaries)} "
                f"boundaries and {len(mixtures)} mixtures."
            )
        if any(b1 >= b2 for b1, b2 in zip(self.boundaries, self.boundaries[1:], strict=False)):
            raise ValueError(f"step_switch boundaries must increase, got {self.boundaries}.")
        self._mixtures = [as_mixture(m) for m in mixtures]

    def stage(self, step):  # noqa: D102
        step = tf.cast(step, tf.int64)
        return tf.reduce_sum(tf.cast(step >= tf.constant(self.boundaries, tf.int64), tf.int32))

    def mixture(self, step):  # noqa: D102
        return tf.gather(tf.constant(self._mixtures, tf.float32), self.stage(step))

    def stages(self):  # noqa: D102
        return list(self._mixtures)

    def get_config(self):  # noqa: D102
        return {
            "boundaries": self.boundaries,
            "mixtures": [dict(zip(NEGATIVE_TYPES, m, strict=True)) for m in self._mixtures],
        }


@CURRICULA.register("linear_ramp")
class LinearRamp(Curriculum):
    """Linear interpolation from one mixture to another between two steps.

    Args:
        start_step: Last step of ``start`` (constant before it).
        end_step: First step of ``end`` (constant after it).
        start: Mixture before ``start_step``.
        end: Mixture after ``end_step``.
    """

    def __init__(
        self,
        start_step: int,
        end_step: int,
        start: MixtureLike = (1.0, 0.0, 0.0),
        end: MixtureLike = (0.75, 0.25, 0.0),
    ) -> None:
        if end_step <= start_step:
            raise ValueError(
                f"linear_ramp needs end_step > start_step, got {start_step}, {end_step}."
            )
        self.start_step, self.end_step = int(start_step), int(end_step)
        self._start, self._end = as_mixture(start), as_mixture(end)

    def stage(self, step):  # noqa: D102
        step = tf.cast(step, tf.int64)
        return tf.cast(step >= self.start_step, tf.int32) + tf.cast(step >= self.end_step, tf.int32)

    def mixture(self, step):  # noqa: D102
        progress = (tf.cast(step, tf.float32) - self.start_step) / (self.end_step - self.start_step)
        progress = tf.clip_by_value(progress, 0.0, 1.0)
        start = tf.constant(self._start, tf.float32)
        return start + progress * (tf.constant(self._end, tf.float32) - start)

    def stages(self):  # noqa: D102
        return [self._start, self._end]

    def get_config(self):  # noqa: D102
        return {
            "start_step": self.start_step,
            "end_step": self.end_step,
            "start": dict(zip(NEGATIVE_TYPES, self._start, strict=True)),
            "end": dict(zip(NEGATIVE_TYPES, self._end, strict=True)),
        }


def serialize(curriculum: Curriculum) -> dict:
    """``{"name": registered name, "config": get_config()}`` of a registered curriculum.

    Raises:
        ValueError: If the curriculum's class is not registered in ``CURRICULA``.
    """
    for name in CURRICULA.list():
        if CURRICULA.get(name) is type(curriculum):
            return {"name": name, "config": curriculum.get_config()}
    raise ValueError(
        f"{type(curriculum).__name__} is not registered in CURRICULA, so it cannot be "
        f"saved; register it with @CURRICULA.register(name). Known: {', '.join(CURRICULA.list())}."
    )


def deserialize(config: Mapping) -> Curriculum:
    """The curriculum that :func:`serialize` described."""
    return CURRICULA.build(config["name"], **dict(config["config"]))
