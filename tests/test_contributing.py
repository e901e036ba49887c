"""The examples of CONTRIBUTING.md run: read from the guide, not copied, so they cannot rot."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys

import pytest
from tiny import REPO_ROOT, train_tiny

from avts_tf.registry import BACKBONES, OBJECTIVES


def guide_example(heading: str) -> str:
    """The first ``python`` block under ``## <heading>`` in CONTRIBUTING.md."""
    text = (REPO_ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, f"no python example under '## {heading}'"
    return found.group(1)


def import_example(heading: str, module: str, folder) -> object:
    """Writes the guide's example to ``folder/<module>.py`` and imports it."""
    (folder / f"{module}.py").write_text(guide_example(heading), encoding="utf-8")
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(module, None)


def _tower_contract():
    """``tests/backbones/test_towers.py``, the contract every registered tower meets."""
    path = REPO_ROOT / "tests" / "backbones" / "test_towers.py"
    spec = importlib.util.spec_from_file_location("tower_contract", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def guide_backbone(tmp_path_factory):
    """The backbone of the guide, registered for these tests (in BACKBONES only while they
    run: other tests list the built-in towers)."""
    import_example("Add a backbone", "guide_towers", tmp_path_factory.mktemp("guide"))
    (name,) = [n for n in BACKBONES.list() if n == "my_video_net"]
    yield name
    del BACKBONES._entries[name]


@pytest.mark.parametrize(
    "check",
    [
        "test_named_input_and_pooled_output",
        "test_embedding_and_head",
        "test_config_round_trip",
        "test_keras_save_reload_identical",
        "test_predict_over_dataset",
    ],
)
def test_the_guides_backbone_meets_the_tower_contract(guide_backbone, check, tmp_path):
    contract = getattr(_tower_contract(), check)
    if "tmp_path" in contract.__code__.co_varnames[: contract.__code__.co_argcount]:
        contract(guide_backbone, tmp_path)
    else:
        contract(guide_backbone)


@pytest.fixture(scope="module")
def guide_task(tmp_path_factory):
    """The task of the guide, registered for these tests."""
    module = import_example("Add a task", "guide_reversal", tmp_path_factory.mktemp("guide"))
    yield module.Reversal
    del OBJECTIVES._entries["reversal"]


def test_the_guides_task_trains_and_its_run_rebuilds_it(guide_task, tiny_prepared, tmp_path):
    import functools

    from avts_tf.run_description import RunDescription

    results = train_tiny(
        tmp_path / "run", tiny_prepared, objective=functools.partial(guide_task, reverse_rate=0.25)
    )
    assert results.headline == "reversal_accuracy"
    assert 0.0 <= results["reversal_accuracy"] <= 1.0
    rebuilt = RunDescription.read(tmp_path / "run").build_task()
    assert type(rebuilt) is guide_task and rebuilt.reverse_rate == 0.25


def test_the_guides_command_is_the_code_of_avts_eval_sync():
    """Every line of the guide's command example is a line of ``avts_tf/cli/eval_sync.py``."""
    code = (REPO_ROOT / "avts_tf" / "cli" / "eval_sync.py").read_text(encoding="utf-8")
    lines = {line.rstrip() for line in code.splitlines()}
    missing = [
        line
        for line in guide_example("Add a command").splitlines()
        if line.strip() and line.rstrip() not in lines
    ]
    assert not missing, missing
