"""Every gin recipe parses strictly; the MC3 recipe builds with its real shapes."""

from pathlib import Path

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from avts_tf import config
from avts_tf.experiments import ablation
from avts_tf.tasks.sync.curricula import ConstantMixture, StepSwitch

REPO_ROOT = Path(__file__).resolve().parents[1]
GIN_FILES = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "gin").glob("*.gin"))


@pytest.fixture(autouse=True)
def at_repo_root(monkeypatch):
    # Recipes ``include`` each other by paths relative to the repository root.
    monkeypatch.chdir(REPO_ROOT)


def resolve(name):
    """What a run receives for ``name``: references are called or configured."""
    value = gin.query_parameter(name)
    if isinstance(value, gin.config.ConfigurableReference):
        fn = value.scoped_configurable_fn
        return fn() if value.evaluate else fn
    return value


PER_TOWER = {
    # recipe: (tower, trainable parameters without a head, output features)
    "gin/mc3_curriculum.gin": ("mc3_18", 11_490_240, 512),
    "gin/mc2_curriculum.gin": ("mc2_18", 11_195_328, 512),
    "gin/r3d_curriculum.gin": ("r3d_18", 33_166_272, 512),
    "gin/r2plus1d_curriculum.gin": ("r2plus1d_18", 31_300_125, 512),
    # i3d: 12,697,264 with a 400-way head, less that head, plus the 1024 -> 512 projection.
    "gin/i3d_curriculum.gin": ("i3d", 12_697_264 - 410_000 + 524_800, 512),
}


def test_recipes_exist():
    assert {"gin/quickstart.gin", *PER_TOWER} <= set(GIN_FILES)
    assert {f"gin/ablation_{v}.gin" for v in ablation.VARIANTS} <= set(GIN_FILES)


@pytest.mark.parametrize("path", GIN_FILES)
def test_parses_with_skip_unknown_false(path):
    config.parse_gin([path])  # skip_unknown=False, finalized.
    assert gin.query_parameter("train.Model.video_tower") is not None


def test_unknown_names_are_errors(tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("train.run.no_such_argument = 1\n")
    with pytest.raises(ValueError, match="no_such_argument"):
        config.parse_gin([str(bad)])


def test_a_recipe_imports_modules_beside_it_or_in_the_current_folder(tmp_path, monkeypatch):
    """``import my_pkg.towers`` in a user's recipe, run with the installed ``avts-train``.

    ``config.parse_gin`` itself searches the recipe's folder and the current folder, so the
    installed command finds such modules as ``python tools/train.py`` (which adds the
    checkout) does; a module found in neither is a one-line error naming the recipe's import
    and line, not gin's ModuleNotFoundError traceback.
    """
    import sys

    from avts_tf.errors import UserError

    monkeypatch.setattr(sys, "path", list(sys.path))
    for folder, module in (
        (tmp_path / "project", "towers_in_cwd_7f3"),
        (tmp_path / "recipes", "towers_beside_7f3"),
    ):
        folder.mkdir()
        (folder / f"{module}.py").write_text("IMPORTED = True\n")
    recipe = tmp_path / "recipes" / "mine.gin"
    recipe.write_text(
        "import towers_in_cwd_7f3\nimport towers_beside_7f3\ninclude 'gin/quickstart.gin'\n"
    )
    monkeypatch.chdir(tmp_path / "project")
    try:
        config.parse_gin([str(recipe)])
        assert sys.modules["towers_in_cwd_7f3"].IMPORTED
        assert sys.modules["towers_beside_7f3"].IMPORTED
    finally:
        for module in ("towers_in_cwd_7f3", "towers_beside_7f3"):
            sys.modules.pop(module, None)
    gin.clear_config()
    missing = tmp_path / "recipes" / "missing.gin"
    missing.write_text("include 'gin/quickstart.gin'\nimport not_here_7f3.towers\n")
    with pytest.raises(UserError) as err:
        config.parse_gin([str(missing)])
    assert str(err.value) == (
        f"a recipe's import failed (import not_here_7f3.towers in {missing}, line 2): No module "
        "named 'not_here_7f3'; put the module in the current folder or the recipe's, add its "
        "folder to PYTHONPATH, or pip install it"
    )


def objective_from_gin():
    return resolve("train.Model.objective")(eval_kinds=("easy", "hard", "super_hard"))


@pytest.mark.parametrize(
    "variant, kinds", [("easy", {"easy"}), ("hard", {"hard"}), ("curriculum", {"easy", "hard"})]
)
def test_ablation_recipes_override_only_the_negatives(variant, kinds):
    config.parse_gin([ablation.VARIANTS[variant]])
    objective = objective_from_gin()
    curriculum = objective.curriculum
    assert curriculum.kinds() == kinds
    # Everything else is the quickstart's.
    assert gin.query_parameter("train.Trainer.batch_size") == 16
    assert gin.query_parameter("train.Trainer.train_steps") == 600
    assert set(objective.negatives) == {"hard", "super_hard"}
    if variant == "curriculum":
        assert isinstance(curriculum, StepSwitch)
        assert curriculum.boundaries == [ablation.switch_step(600)]
    else:
        assert isinstance(curriculum, ConstantMixture)


def test_mc3_recipe_is_the_papers_curriculum():
    config.parse_gin(["gin/mc3_curriculum.gin"], ["STEPS_PER_EPOCH = 10"])
    curriculum = objective_from_gin().curriculum
    assert isinstance(curriculum, StepSwitch)
    assert curriculum.boundaries == [50 * 10]
    np.testing.assert_allclose(curriculum.mixture(tf.constant(499)), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(curriculum.mixture(tf.constant(500)), [0.75, 0.25, 0.0])
    assert resolve("train.Trainer.train_steps") == 90 * 10
    assert resolve("train.Trainer.steps_per_epoch") == 10
    assert objective_from_gin().margin == pytest.approx(0.99)
    optimizer = resolve("train.Trainer.optimizer")()
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == pytest.approx(0.9)
    schedule = optimizer._learning_rate
    for step, lr in [(0, 1e-2), (300, 1e-2), (301, 1e-3), (601, 1e-4), (801, 1e-5)]:
        assert float(schedule(step)) == pytest.approx(lr), step


def test_mc3_recipe_builds_its_towers_with_the_real_shapes():
    config.parse_gin(["gin/mc3_curriculum.gin"])
    spec = resolve("train.Model.clip_spec")
    assert spec.video_shape() == (25, 112, 112, 3)
    audio_shape = spec.audio_shape(25.0)  # Kinetics prepared at 25 fps: 1 s windows.
    assert audio_shape == (98, 40, 1)
    video = resolve("train.Model.video_tower")(input_shape=spec.video_shape())
    audio = resolve("train.Model.audio_tower")(input_shape=audio_shape)
    assert video.name == "mc3_18" and audio.name == "avts_audio_vgg"
    trainable = sum(int(np.prod(w.shape)) for w in video.trainable_weights)
    assert trainable == 11_490_240  # torchvision's mc3_18 without its 400-way head.
    assert video.outputs[0].shape[-1] == audio.outputs[0].shape[-1] == 512
    objective_from_gin().build_head(512, 512)  # Contrastive: equal embedding sizes.


@pytest.mark.parametrize("path", sorted(PER_TOWER))
def test_per_tower_recipes_build_their_towers_at_paper_scale(path):
    tower, parameters, features = PER_TOWER[path]
    config.parse_gin([path])
    spec = resolve("train.Model.clip_spec")
    assert spec.video_shape() == (25, 112, 112, 3)
    video = resolve("train.Model.video_tower")(input_shape=spec.video_shape())
    audio = resolve("train.Model.audio_tower")(input_shape=spec.audio_shape(25.0))
    assert video.name == tower
    # ResNets: torchvision's model of that name without its 400-way head.
    assert sum(int(np.prod(w.shape)) for w in video.trainable_weights) == parameters
    assert video.outputs[0].shape[-1] == audio.outputs[0].shape[-1] == features
    objective_from_gin().build_head(features, features)
    # The paper's curriculum, from the MC3 recipe they all include.
    assert isinstance(objective_from_gin().curriculum, StepSwitch)
    assert resolve("train.Trainer.train_steps") == 90 * 3600


def test_tssl_recipe_builds_its_towers_and_task_at_paper_scale():
    config.parse_gin(["gin/tssl_r2plus1d.gin"])
    spec = resolve("train.Model.clip_spec")
    assert spec.video_shape() == (16, 112, 112, 3)
    # temporal-ssl's training colours.
    assert (spec.brightness, spec.saturation, spec.grayscale) == (32 / 255, 0.5, 0.2)
    video = resolve("train.Model.video_tower")(input_shape=spec.video_shape())
    audio = resolve("train.Model.audio_tower")(input_shape=spec.audio_shape(25.0))
    assert (video.name, audio.name) == ("r2plus1d_18", "audio_resnet18")
    assert (
        sum(int(np.prod(w.shape)) for w in video.trainable_weights)
        == PER_TOWER["gin/r2plus1d_curriculum.gin"][1]
    )
    assert video.outputs[0].shape[-1] == audio.outputs[0].shape[-1] == 512
    task = resolve("train.Model.objective")()
    assert task.view_spec.speeds == (1, 2, 4, 8) and task.queue_size == 65536
    task.build_head(512, 512)
    assert tuple(task.queues["video"][0].shape) == (65536, 128)


def test_tssl_recipe_optimizer_is_the_sources_adamw():
    """sjenni/temporal-ssl: AdamW lr 3e-4, betas (0.9, 0.99), decay 1e-4 per step, one
    cosine (alpha 1e-3) on both, BatchNorm parameters and biases not decayed."""
    from avts_tf.optimizers import DecoupledAdamW

    config.parse_gin(["gin/tssl_r2plus1d.gin"])
    optimizer = resolve("train.Trainer.optimizer")()
    assert isinstance(optimizer, DecoupledAdamW)
    assert optimizer.decoupled_weight_decay == pytest.approx(1e-4)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.99, 1e-8)
    assert optimizer.no_decay == ("gamma", "beta", "bias")
    schedule = optimizer._learning_rate
    steps = resolve("train.Trainer.train_steps")
    assert float(schedule(0)) == pytest.approx(3e-4)
    assert float(schedule(steps // 2)) == pytest.approx(3e-4 * (0.5 * 0.999 + 1e-3))
    assert float(schedule(steps)) == pytest.approx(3e-4 * 1e-3)


def test_avts_tssl_recipe_trains_both_tasks_in_one_objective():
    config.parse_gin(["gin/avts_tssl_quickstart.gin"])
    task = resolve("train.Model.objective")()
    assert list(task.tasks) == ["sync", "temporal"]
    assert task.weights_by_task == {"sync": 1.0, "temporal": 0.1}
    assert task.headline == "sync_accuracy"
    assert type(task.tasks["temporal"]).__name__ == "TemporalContrastive"
