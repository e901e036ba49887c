"""The built wheel carries the recipes, the typing marker, the license and every command."""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile

from tiny import REPO_ROOT

import avts_tf
from avts_tf import recipes


def test_wheel_ships_recipes_commands_and_metadata(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("avts_tf-*.whl")
    assert wheel.name == f"avts_tf-{avts_tf.__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        n.removeprefix("avts_tf/gin/").removesuffix(".gin")
        for n in names
        if n.startswith("avts_tf/gin/")
    }
    assert shipped == set(recipes.builtin_names()) and "quickstart" in shipped
    assert "avts_tf/py.typed" in names
    info = f"avts_tf-{avts_tf.__version__}.dist-info"
    assert any(n.startswith(f"{info}/licenses/LICENSE") for n in names), sorted(names)
    entry_points = configparser.ConfigParser()
    entry_points.read_string(zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode())
    scripts = dict(entry_points["console_scripts"])
    assert {
        "avts-train",
        "avts-prepare",
        "avts-extract",
        "avts-eval-audio",
        "avts-eval-sync",
        "avts-finetune",
    } <= set(scripts)
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert f"{module.replace('.', '/')}.py" in names, target
        assert function == "main"


def test_recipe_folder_at_the_top_is_the_packaged_one():
    assert (REPO_ROOT / "gin").resolve() == recipes.RECIPE_DIR
