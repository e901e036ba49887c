"""Named registries of pluggable parts: backbones, negative samplers, curricula, objectives.

A registry maps a short name to a factory. Registering also makes the factory gin
configurable (``gin.register``), so a gin file can set its arguments or reference it
as ``@mc3_18``, while the factory itself is returned unaltered and stays plain Python.

Example:
    >>> from avts_tf.registry import BACKBONES
    >>> @BACKBONES.register("my_tower")
    ... def my_tower(embedding_dim: int = 128): ...
    >>> BACKBONES.get("my_tower") is my_tower
    True
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import gin

F = TypeVar("F", bound=Callable[..., Any])


def _origin(obj: Any) -> str:
    """Where ``obj`` was defined, as ``module.qualname (file:line)``."""
    module = getattr(obj, "__module__", "?")
    qualname = getattr(obj, "__qualname__", repr(obj))
    try:
        file = inspect.getsourcefile(obj)
        line = inspect.getsourcelines(obj)[1]
        return f"{module}.{qualname} ({file}:{line})"
    except (OSError, TypeError):
        return f"{module}.{qualname}"


class Registry:
    """A name -> factory mapping with gin registration and helpful errors.

    Args:
        kind: What the registry holds, used in messages and as the gin module
            (for example ``"backbones"``, so gin can say ``@backbones.mc3_18``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator that registers a factory under ``name`` (default: its ``__name__``).

        Raises:
            ValueError: If ``name`` is already registered; the message names where the
                first registration came from.
        """

        def decorator(factory: F) -> F:
            key = name or factory.__name__
            if key in self._entries:
                raise ValueError(
                    f"{self.kind} name {key!r} is already registered by "
                    f"{_origin(self._entries[key])}; pick another name for {_origin(factory)}."
                )
            self._entries[key] = factory
            gin.register(key, module=self.kind)(factory)
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        """Returns the factory registered under ``name``.

        Raises:
            KeyError: If no such name exists; lists the known names.
        """
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise KeyError(
                f"Unknown {self.kind} name {name!r}. Known {self.kind}: {known}. "
                f"Did you import the module that registers it?"
            ) from None

    def build(self, name: str, **kwargs: Any) -> Any:
        """Calls the factory registered under ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching the fnmatch ``pattern`` (e.g. ``"r*"``)."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.list()})"


BACKBONES = Registry("backbones")
SAMPLERS = Registry("samplers")
CURRICULA = Registry("curricula")
OBJECTIVES = Registry("objectives")
