"""Gin set-up shared by the command-line tools."""

from __future__ import annotations

from collections.abc import Sequence

import gin


def import_registrations() -> None:
    """Imports every module that registers gin configurables (towers, samplers, ...)."""
    import avts_tf.backbones  # noqa: F401
    import avts_tf.data.ingestion.datasets  # noqa: F401
    import avts_tf.data.pipeline  # noqa: F401
    import avts_tf.tasks  # noqa: F401
    import avts_tf.tasks.sync.curricula  # noqa: F401
    import avts_tf.tasks.sync.objectives  # noqa: F401
    import avts_tf.tasks.sync.samplers  # noqa: F401
    import avts_tf.tasks.temporal.task  # noqa: F401
    import avts_tf.train  # noqa: F401


def parse_gin(files: Sequence[str], bindings: Sequence[str] = (), finalize: bool = True) -> None:
    """Parses gin files and bindings strictly (unknown names are errors)."""
    import_registrations()
    gin.parse_config_files_and_bindings(
        list(files), list(bindings), skip_unknown=False, finalize_config=finalize
    )
