"""Gin set-up shared by the command-line tools: recipes by name, errors in one line."""

from __future__ import annotations

import difflib
import inspect
import os
import re
import sys
import tokenize
from collections.abc import Mapping, Sequence
from typing import Any

import gin
from gin import config as gin_config

from avts_tf import recipes
from avts_tf.errors import UserError

#: ``train.run``'s parameters that moved into its groups: parameter -> configurable.
MOVED_PARAMETERS = {
    **dict.fromkeys(("video_tower", "audio_tower", "objective", "clip_spec"), "train.Model"),
    **dict.fromkeys(
        (
            "optimizer",
            "batch_size",
            "train_steps",
            "steps_per_epoch",
            "seed",
            "checkpoint_every_steps",
            "eval_every_steps",
            "train_split",
        ),
        "train.Trainer",
    ),
    **dict.fromkeys(("precision", "jit_compile"), "train.Runtime"),
}


def moved_binding(selector: str, param: str) -> str | None:
    """The binding that now sets ``selector.param`` (a ``train.run`` parameter), or None.

    ``selector`` may be short (``run``) or scoped (``eval/train.run``); the answer keeps
    its form (``Trainer.batch_size``, ``eval/train.Trainer.batch_size``).
    """
    scope, _, name = selector.rpartition("/")
    if name not in ("train.run", "run") or param not in MOVED_PARAMETERS:
        return None
    target = MOVED_PARAMETERS[param]
    target = target if name == "train.run" else target.rpartition(".")[2]
    return f"{scope + '/' if scope else ''}{target}.{param}"


def parse_gin(files: Sequence[str], bindings: Sequence[str] = (), finalize: bool = True) -> None:
    """Parses gin files and bindings strictly (unknown names are errors).

    The configurables they name must be registered first: ``import avts_tf.train`` (which
    imports ``avts_tf.registry_imports``) for a training recipe.

    Args:
        files: Recipe paths or built-in recipe names (``quickstart``), applied in order.
        bindings: Extra bindings (``train.Trainer.train_steps=100``), applied after the
            files.
        finalize: Locks the configuration after parsing.

    Raises:
        UserError: A missing recipe, an unknown configurable or parameter (the message
            lists the valid names, closest first; a ``train.run`` parameter that moved
            names its new binding) or a binding that does not parse.
    """
    paths = [recipes.resolve(f) for f in files]  # before TensorFlow loads: a clean error
    recipes.register_search_path()
    _make_recipe_imports_findable(paths)
    try:
        gin.parse_config_files_and_bindings(
            paths, list(bindings), skip_unknown=False, finalize_config=finalize
        )
    except ImportError as err:  # ``import my_pkg.towers`` in a recipe
        problem, *location = str(err).splitlines()
        found = re.search(r'In file "(.+)", line (\d+)', " ".join(location))
        where = (
            f" ({location[-1].strip()} in {found.group(1)}, line {found.group(2)})"
            if found and len(location) > 1
            else ""
        )
        raise UserError(
            f"a recipe's import failed{where}: {problem}; put the module in the current "
            "folder or the recipe's, add its folder to PYTHONPATH, or pip install it"
        ) from None
    except OSError as err:  # a missing ``include``
        missing = re.search(r"Unable to open file: (\S+?)\.? Searched", str(err))
        name = missing.group(1) if missing else str(err)
        raise UserError(
            f"gin include {name} not found; give a path relative to the current folder or "
            f"a built-in recipe as gin/<name>.gin ({', '.join(recipes.builtin_names())})"
        ) from None
    except (ValueError, SyntaxError, tokenize.TokenError) as err:
        raise UserError(explain_gin_error(err, bindings)) from None
    _check_keyword_parameters(bindings)


def _make_recipe_imports_findable(paths: Sequence[str]) -> None:
    """Lets a recipe's ``import my_pkg.towers`` find a module beside it or in the cwd.

    ``python script.py`` and ``python -m`` look there; the installed ``avts-train`` does
    not by itself, so without this a recipe importing the user's own backbone would fail
    unless it was installed. Appended, so installed packages keep precedence.
    """
    for folder in [os.getcwd(), *(os.path.dirname(os.path.abspath(p)) for p in paths)]:
        if folder not in sys.path:
            sys.path.append(folder)


def _accepted_parameters(wrapped: Any) -> set[str] | None:
    """Parameters a Keras layer taking ``**kwargs`` accepts: its and its bases' ``__init__``'s.

    ``None`` for anything else (gin checks the names of a signature without ``**kwargs``;
    other ``**kwargs`` may be forwarded anywhere).
    """
    import keras  # loads TensorFlow: config is imported before commands check their flags

    if not (inspect.isclass(wrapped) and issubclass(wrapped, keras.layers.Layer)):
        return None
    try:
        own = inspect.signature(wrapped.__init__).parameters.values()
    except (TypeError, ValueError):
        return None
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own):
        return None
    accepted: set[str] = set()
    for cls in wrapped.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None or cls is object:
            continue
        try:
            accepted.update(
                name
                for name, p in inspect.signature(init).parameters.items()
                if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
            )
        except (TypeError, ValueError):
            continue
    return (accepted | {"input_dim", "input_shape"}) - {"self"}  # Layer's own **kwargs


def _check_keyword_parameters(bindings: Sequence[str]) -> None:
    """Refuses a bound parameter a ``**kwargs`` class (a Keras layer) would reject later.

    gin lets any name through to a signature with ``**kwargs``; Keras would then fail while
    the run is being built, after the model_dir is written to.
    """
    for (_, selector), params in gin_config._CONFIG.items():  # noqa: SLF001
        configurable = gin_config._REGISTRY.get_match(selector)  # noqa: SLF001
        accepted = _accepted_parameters(configurable.wrapped) if configurable else None
        if accepted is None:
            continue
        for param in params:
            if param not in accepted:
                binding = next(
                    (b for b in bindings if re.match(rf"\s*{re.escape(selector)}\.{param}\s*=", b)),
                    None,
                )
                where = f" (--gin_param {binding!r})" if binding else ""
                raise UserError(
                    f"{selector} has no parameter {param}{where}; "
                    f"{_choices(param, parameter_names(selector))}"
                )


def configurable_names() -> list[str]:
    """Every registered gin configurable, as ``module.name``."""
    return sorted(
        name
        for name, _ in gin_config._REGISTRY.items()  # noqa: SLF001
        if not name.startswith("gin.")
    )


def parameter_names(selector: str) -> list[str]:
    """The parameters gin may bind on configurable ``selector``."""
    configurable = gin_config._REGISTRY.get_match(selector)  # noqa: SLF001
    if configurable is None:
        return []
    wrapped = configurable.wrapped
    target = wrapped.__init__ if inspect.isclass(wrapped) else wrapped
    try:
        params = list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return []
    denied = set(configurable.denylist or ())
    allowed = configurable.allowlist
    return [
        p
        for p in params
        if p not in ("self", "args", "kwargs") and p not in denied and (not allowed or p in allowed)
    ]


def _choices(wrong: str, valid: Sequence[str], moved: Mapping[str, str] | None = None) -> str:
    """``did you mean ...? valid: ...``; a close name in ``moved`` is offered as its value."""
    moved = moved or {}
    close = difflib.get_close_matches(wrong, [*valid, *moved], n=3, cutoff=0.5)
    close = list(dict.fromkeys(moved.get(name, name) for name in close))
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return f"{hint}valid: {', '.join(valid)}"


def _syntax_error(binding: str) -> Exception | None:
    """The error gin's parser raises on ``binding`` alone, names left unresolved."""
    try:
        for _ in gin_config.config_parser.ConfigParser(
            binding, gin_config.ParserDelegate(skip_unknown=True)
        ):
            pass
    except (ValueError, SyntaxError, tokenize.TokenError) as err:
        return err
    return None


def _where(text: str, bindings: Sequence[str]) -> str:
    """`` (--gin_param 'x=1')`` or `` (file "f.gin", line 3)`` for gin's error ``text``."""
    match = re.search(r"In (bindings string line (\d+)|file \"?[^\n]+?\"?, line \d+)", text)
    if match and match.group(2) and 0 < int(match.group(2)) <= len(bindings):
        return f" (--gin_param {bindings[int(match.group(2)) - 1]!r})"
    if match:
        return f" ({match.group(1)})"
    failing = [b for b in bindings if _syntax_error(b) is not None]
    return f" (--gin_param {failing[0]!r})" if failing else ""


def explain_gin_error(err: Exception, bindings: Sequence[str] = ()) -> str:
    """One line for a gin parse error: what is wrong, where, and the valid names.

    Args:
        err: The error gin raised.
        bindings: The ``--gin_param`` bindings parsed (after the files), to name the one at
            fault.
    """
    text = str(err)
    where = _where(text, bindings)
    unknown = re.match(r"No configurable matching (?:reference )?'@?([\w.]+)'", text)
    if unknown:
        name = unknown.group(1)
        module = name.rpartition(".")[0]
        names = configurable_names()
        in_module = [n for n in names if module and n.startswith(module + ".")]
        return f"unknown gin name {name}{where}; {_choices(name, in_module or names)}"
    parameter = re.match(r"Configurable '([\w.]+)' doesn't have a parameter named '(\w+)'", text)
    if parameter:
        selector, param = parameter.groups()
        moved = moved_binding(selector, param)
        if moved:
            value = re.match(r"[^=]*=\s*(.*\S)", text.rstrip().splitlines()[-1])
            return (
                f"{selector}.{param}{where} is now {moved}; write {moved} = "
                f"{value.group(1) if value else '...'}"
            )
        elsewhere = {name: moved_binding(selector, name) for name in MOVED_PARAMETERS}
        elsewhere = {name: binding for name, binding in elsewhere.items() if binding}
        return (
            f"{selector} has no parameter {param}{where}; "
            f"{_choices(param, parameter_names(selector), elsewhere)}"
        )
    token = re.search(r"Failed to parse token '([^']*)'", text)
    if token:
        return (
            f"{token.group(1)} is not a gin value{where}; write a number, a quoted "
            f"string ('{token.group(1)}'), True/False/None, a list or tuple, or a "
            f"reference (@name or @name())"
        )
    if isinstance(err, tokenize.TokenError):  # ('EOF in multi-line statement', (2, 0))
        text = "a bracket or quote is not closed"
    first = text.splitlines()[0] if text else type(err).__name__
    what = "binding" if where.startswith(" (--gin_param") else "recipe"
    return f"could not parse the gin configuration{where}: {first}; check the {what}'s syntax"
