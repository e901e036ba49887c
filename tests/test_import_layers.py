"""The package's layers point down: a module imports only its own layer or lower ones.

Read with ``ast`` (nothing is imported), at module level and inside functions alike, so an
upward import or a cycle cannot hide in a function. ``LAYERS`` is the map CONTRIBUTING.md describes.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "avts_tf"

#: Lowest first. A module belongs to the longest prefix listed.
LAYERS: list[tuple[str, ...]] = [
    (
        "avts_tf.errors",
        "avts_tf.settings",
        "avts_tf.atomic",
        "avts_tf.registry",
        "avts_tf.recipes",
        "avts_tf.optimizers",
    ),
    ("avts_tf.data", "avts_tf.backbones"),
    ("avts_tf.tasks",),
    ("avts_tf.models", "avts_tf.registry_imports"),
    (
        "avts_tf.config",
        "avts_tf.run_description",
        "avts_tf.portable",
        "avts_tf.distribute",
        "avts_tf.preemption",
        "avts_tf.callbacks",
        "avts_tf.run_checks",
    ),
    ("avts_tf.evaluation",),
    ("avts_tf.train",),
    ("avts_tf.experiments",),
    ("avts_tf.cli",),
]


def layer_of(module: str) -> int | None:
    """Index in ``LAYERS`` of the longest prefix of ``module``; ``None`` if unlisted."""
    best, index = -1, None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, index = len(name), i
    return index


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[str, int]]:
    """``(imported avts_tf module, line)`` for every import in ``source``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(parts + ([node.module] if node.module else []))
            # ``from avts_tf.data import pipeline`` imports the module avts_tf.data.pipeline.
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name.split(".")[0] == "avts_tf"]


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """``module:line imports target (layer i > j)`` for each import above ``module``."""
    own = layer_of(module)
    problems = []
    for target, line in imported_modules(source, module, is_package):
        theirs = layer_of(target)
        if own is not None and theirs is not None and theirs > own:
            problems.append(f"{module}:{line} imports {target} (layer {theirs} > {own})")
    return problems


def library_modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def test_every_module_has_a_layer():
    unlisted = [m for m in library_modules() if m != "avts_tf" and layer_of(m) is None]
    assert not unlisted, f"add these to LAYERS: {unlisted}"


def test_no_module_imports_a_higher_layer():
    problems = []
    for module, path in sorted(library_modules().items()):
        problems += upward_imports(
            path.read_text(encoding="utf-8"), module, path.name == "__init__.py"
        )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "source",
    [
        "from avts_tf import train\n",
        "import avts_tf.evaluation.report\n",
        "def f():\n    from avts_tf.cli import flags\n",
        "from ..evaluation import report\n",
    ],
)
def test_an_upward_import_is_found_at_any_depth(source):
    (problem,) = upward_imports(textwrap.dedent(source), "avts_tf.data.pipeline")
    assert problem.startswith("avts_tf.data.pipeline:")


def test_downward_and_same_layer_imports_pass():
    source = "from avts_tf.data import clips\nfrom avts_tf import errors\nimport tensorflow\n"
    assert upward_imports(source, "avts_tf.tasks.base") == []
    assert upward_imports("from . import clips\n", "avts_tf.data.pipeline") == []


def test_no_import_cycle():
    """Not even through imports inside functions (a cycle dodged at import time is one)."""
    modules = library_modules()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name, _ in imported_modules(
            path.read_text(encoding="utf-8"), module, path.name == "__init__.py"
        ):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                targets.add(name)
        graph[module] = targets

    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
