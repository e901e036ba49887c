"""Shared fixtures: gin isolation, a tiny prepared synthetic dataset and a tiny finished run.

The values behind them (clip spec, towers, gin text) are in ``tiny.py``, which test modules
and subprocess scripts import; this module is loaded by pytest only.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN kernels (off by default on AVX2-only CPUs): ~2x faster convs, as in tools/train.py.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import gin  # noqa: E402
import keras  # noqa: E402
import pytest  # noqa: E402
import tiny  # noqa: E402

# The longest modules, longest first (measured under ``-n 2``): a worker that starts one late
# would run alone at the end. Other modules holding a ``slow`` test follow, then the rest.
LONGEST_FIRST = (
    "tasks/temporal/test_tssl_quickstart.py",
    "test_quickstart.py",
    "test_fault_tolerance.py",
    "test_distributed.py",
    "tasks/temporal/test_temporal_distributed.py",
    "test_train.py",
    "data/test_user_inputs.py",
    "evaluation/test_controls.py",
    "tasks/temporal/test_temporal_resume.py",
    "test_train_checks.py",
    "tasks/test_task_contract.py",
    "evaluation/test_tools.py",
    "test_ablation.py",
)


def pytest_collection_modifyitems(items):
    """Orders modules so that ``pytest-xdist`` (``--dist loadfile``: whole modules to a
    worker, handed out in this order) starts the long ones first."""
    tests = Path(__file__).resolve().parent
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    order = {id(item): index for index, item in enumerate(items)}

    def rank(item) -> tuple:
        name = item.path.relative_to(tests).as_posix()
        first = LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
        return first, item.path not in slow_files, order[id(item)]

    items.sort(key=rank)


@pytest.fixture(scope="session", autouse=True)
def subprocess_tmpdir(tmp_path_factory):
    """Processes the tests start use a temporary folder under pytest's own base folder:
    what a process killed with ``kill -9`` cannot clean up (its ``tempfile`` folders) goes
    away with pytest's old base folders instead of piling up in the machine's /tmp."""
    folder = tmp_path_factory.mktemp("subprocess_tmp")
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous


@pytest.fixture(autouse=True)
def clear_gin():
    """Every test starts and ends with an empty gin config and float32 policy."""
    gin.clear_config()
    yield
    gin.clear_config()
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """Eight 3 s synthetic videos (6 train, 2 test) at 32x32, ingested at 8 fps."""
    from avts_tf.data.ingestion import prepare, synthetic
    from avts_tf.data.manifest import IngestConfig

    root = tmp_path_factory.mktemp("tiny_synthetic")
    csv_path = synthetic.generate_synthetic_dataset(
        root / "videos",
        num_videos=8,
        seed=3,
        duration_s=3.0,
        fps=tiny.FPS,
        size=32,
        num_classes=2,
        test_fraction=0.25,
    )
    out = root / "prepared"
    prepare.prepare_dataset(
        csv_path,
        out,
        IngestConfig(fps=tiny.FPS, short_side=32),
        options=prepare.RunOptions(progress=False),
    )
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_prepared) -> Path:
    """A model_dir as ``train.run`` leaves it: ``.keras`` tiny towers, run.json, RUN_GIN."""
    keras.utils.set_random_seed(0)
    run = tmp_path_factory.mktemp("run")
    tiny.tiny_video_tower().save(run / "video_tower.keras")
    tiny.tiny_audio_tower().save(run / "audio_tower.keras")
    tiny.describe_run(run, tiny_prepared)
    (run / "operative_config.gin").write_text(tiny.RUN_GIN, encoding="utf-8")
    return run
