import gin
import pytest

from avts_tf.registry import BACKBONES, CURRICULA, OBJECTIVES, SAMPLERS, Registry


def test_register_returns_factory_unaltered_and_gets_it_back():
    registry = Registry("widgets")

    @registry.register("alpha")
    def alpha(size: int = 1):
        return size

    assert registry.get("alpha") is alpha
    assert alpha(size=3) == 3
    assert "alpha" in registry and len(registry) == 1
    assert registry.build("alpha", size=5) == 5


def test_register_makes_factory_gin_configurable():
    registry = Registry("gadgets_test")

    @registry.register("beta")
    def beta(size: int = 1):
        return size

    @gin.configurable
    def consume(factory=None):
        return factory()

    gin.parse_config(["gadgets_test.beta.size = 7", "consume.factory = @gadgets_test.beta"])
    assert consume() == 7
    assert beta() == 1  # Direct calls are untouched by gin.


def test_unknown_name_lists_known_names_and_asks_about_import():
    registry = Registry("things")
    registry.register("one")(lambda: 1)
    registry.register("two")(lambda: 2)
    with pytest.raises(KeyError) as error:
        registry.get("three")
    message = str(error.value)
    assert "'three'" in message and "one, two" in message
    assert "import the module" in message


def test_duplicate_name_names_first_registration():
    registry = Registry("dupes")

    @registry.register("same")
    def first():
        return 1

    with pytest.raises(ValueError, match=r"already registered by .*test_registry.*first"):

        @registry.register("same")
        def second():
            return 2


def test_list_filters_with_fnmatch():
    registry = Registry("listing")
    for name in ("r3d_18", "r2plus1d_18", "mc3_18"):
        registry.register(name)(lambda: None)
    assert registry.list() == ["mc3_18", "r2plus1d_18", "r3d_18"]
    assert registry.list("r*") == ["r2plus1d_18", "r3d_18"]
    assert registry.list("x*") == []


def test_builtin_registries_are_populated():
    import avts_tf.backbones  # noqa: F401
    import avts_tf.tasks.sync.curricula  # noqa: F401
    import avts_tf.tasks.sync.objectives  # noqa: F401
    import avts_tf.tasks.sync.samplers  # noqa: F401

    assert {"mc3_18", "avts_audio_vgg"} <= set(BACKBONES.list())
    assert SAMPLERS.list() == ["easy", "hard", "super_hard"]
    assert {"constant", "step_switch", "linear_ramp"} <= set(CURRICULA.list())
    assert {"contrastive", "fusion"} <= set(OBJECTIVES.list())
