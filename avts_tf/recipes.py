"""The gin recipes shipped with the package, found by name or by path from any folder.

``quickstart``, ``quickstart.gin`` and ``gin/quickstart.gin`` all name the built-in
``avts_tf/gin/quickstart.gin`` (a file of that path under the current folder wins), and an
``include 'gin/quickstart.gin'`` inside a recipe resolves the same way.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import gin
from gin import config as gin_config

from avts_tf.errors import UserError

#: Folder of the built-in recipes (package data).
RECIPE_DIR = Path(__file__).resolve().parent / "gin"
_SEARCH_ROOT = str(RECIPE_DIR.parent)  # so that ``gin/<name>.gin`` resolves in includes


def builtin_names() -> list[str]:
    """Names of the built-in recipes (``quickstart``, ``mc3_curriculum``, ...), sorted."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.gin"))


def register_search_path() -> None:
    """Lets ``include 'gin/<name>.gin'`` inside any recipe find the built-in recipes."""
    if _SEARCH_ROOT not in gin_config._LOCATION_PREFIXES:  # noqa: SLF001 (no public query)
        gin.add_config_file_search_path(_SEARCH_ROOT)


def resolve(name_or_path: str) -> str:
    """The file a ``--gin_file`` value names: an existing path, else a built-in recipe.

    Args:
        name_or_path: A path (``my.gin``, ``gin/quickstart.gin``) or a built-in recipe's
            name with or without ``.gin`` (``quickstart``).

    Returns:
        The path to parse.

    Raises:
        UserError: Neither a file nor a built-in recipe; the message lists the built-in
            names, closest first.
    """
    if os.path.isfile(name_or_path):
        return name_or_path
    stem = Path(name_or_path).name
    stem = stem[: -len(".gin")] if stem.endswith(".gin") else stem
    plain = name_or_path.removesuffix(".gin")
    if plain in (stem, f"gin/{stem}") and (RECIPE_DIR / f"{stem}.gin").is_file():
        return str(RECIPE_DIR / f"{stem}.gin")
    names = builtin_names()
    close = difflib.get_close_matches(stem, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(
        f"gin file {name_or_path} not found; {hint}give a path to a .gin file or a built-in "
        f"recipe: {', '.join(names)}"
    )


def stem(name_or_path: str) -> str:
    """The recipe's name without folder and ``.gin`` (default model_dir name)."""
    return Path(name_or_path).name.removesuffix(".gin")
