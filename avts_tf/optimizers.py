"""Optimizers whose settings mean what they meant in the papers' code.

``DecoupledAdamW`` is Adam with decoupled weight decay given as ``tf.contrib.opt``'s
``AdamWOptimizer`` took it: each step removes ``decoupled_weight_decay`` of every decayed
weight, scaled by the learning-rate schedule's multiplier ``lr(t) / lr(0)`` (the authors of
the temporal recipe, ``sjenni/temporal-ssl`` ``train/VideoBaseTrainer.py``, scale rate and
decay by one cosine). Keras' ``AdamW`` removes ``lr(t) * weight_decay`` instead, so the same
number there is ``1 / lr(0)`` times weaker (3,333x at lr 3e-4).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import gin
import keras

#: Variables left undecayed by default: BatchNorm's scale and offset, and biases.
NO_DECAY = ("gamma", "beta", "bias")


def initial_rate(learning_rate: Any) -> float:
    """``lr(0)`` of a float, a variable or a ``LearningRateSchedule``.

    Raises:
        ValueError: Another callable, or a rate that is not positive at step 0 (the decay is
            scaled by ``lr(t) / lr(0)``).
    """
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        value = float(learning_rate(0))
    elif callable(learning_rate):
        raise ValueError(
            "DecoupledAdamW.learning_rate must be a float or a "
            "keras.optimizers.schedules.LearningRateSchedule, not "
            f"{learning_rate!r}"
        )
    else:
        value = float(learning_rate)
    if not value > 0:
        raise ValueError(
            f"DecoupledAdamW needs a positive learning rate at step 0 (got "
            f"{value}): its decay follows lr(t) / lr(0); start a warm-up above 0"
        )
    return value


def name_pattern(names: Sequence[str]) -> str:
    """A regex matching a variable whose last path component is one of ``names``.

    TensorFlow's variable names are paths (``block1/bn/gamma:0``): anchoring on the last
    component keeps a layer called ``bias_head`` decayed.
    """
    alternatives = "|".join(re.escape(name) for name in names)
    return rf"(?:^|/)(?:{alternatives})(?::\d+)?$"


@keras.saving.register_keras_serializable(package="avts_tf")
class DecoupledAdamW(keras.optimizers.Adam):
    """Adam with decoupled weight decay in per-step units, as ``tf.contrib.opt.AdamWOptimizer``.

    Per step, for a decayed weight ``w``: ``w <- w - decoupled_weight_decay * lr(t) / lr(0)
    * w``, then Adam's update. Implemented as Keras' own decay (distribution-safe) with
    ``weight_decay = decoupled_weight_decay / lr(0)``, which Keras multiplies by ``lr(t)``.

    Args:
        learning_rate: A float or a ``LearningRateSchedule`` positive at step 0.
        decoupled_weight_decay: Fraction of each decayed weight removed per step at the
            schedule's start (the source's ``weight_decay``).
        beta_1, beta_2, epsilon: Adam's; the defaults are TF1 ``AdamOptimizer``'s.
        no_decay: Variable names (last path component) not decayed; ``()`` decays all.
        **kwargs: Other ``keras.optimizers.Adam`` arguments, except ``weight_decay``.
    """

    def __init__(
        self,
        learning_rate: Any = 1e-3,
        decoupled_weight_decay: float = 1e-4,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        no_decay: Sequence[str] = NO_DECAY,
        name: str = "decoupled_adamw",
        **kwargs: Any,
    ) -> None:
        if "weight_decay" in kwargs:
            raise ValueError(
                "DecoupledAdamW takes decoupled_weight_decay (the fraction of a "
                "weight removed per step), not Keras' weight_decay"
            )
        if decoupled_weight_decay < 0:
            raise ValueError(
                f"DecoupledAdamW.decoupled_weight_decay must be >= 0, got {decoupled_weight_decay}"
            )
        keras_decay = decoupled_weight_decay / initial_rate(learning_rate)
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            weight_decay=keras_decay or None,
            name=name,
            **kwargs,
        )
        self.decoupled_weight_decay = float(decoupled_weight_decay)
        self.no_decay = (no_decay,) if isinstance(no_decay, str) else tuple(no_decay)
        if self.no_decay:
            self.exclude_from_weight_decay(var_names=[name_pattern(self.no_decay)])

    def get_config(self) -> dict[str, Any]:
        """Keras' config with the per-step decay and the undecayed names, not Keras' decay."""
        config = super().get_config()
        del config["weight_decay"]  # derived from the two below
        config["decoupled_weight_decay"] = self.decoupled_weight_decay
        config["no_decay"] = list(self.no_decay)
        return config


gin.register(DecoupledAdamW, module="optimizers")
