"""The temporal controls over seeds: verdicts against chance, the table, and ``avts-controls``."""

import json

import numpy as np
import pytest
from checks import assert_one_error_line
from eval_helpers import run_in_process

from avts_tf.evaluation import controls
from avts_tf.evaluation.controls import ControlRun
from avts_tf.tasks.temporal.task import CONTROLLED, HEADS, TemporalContrastive

TASK = TemporalContrastive()  # Its speeds (1, 2, 4): speed is 1/3 by chance.
MEASURED = TASK.control_metrics(32)
CHANCE = {m.name: m.chance for m in MEASURED}


def planted(control: str, seed: int, training: dict | None = None, **held_out) -> ControlRun:
    values = dict.fromkeys(CONTROLLED, 0.9)
    values.update(held_out)
    return ControlRun(
        control=control,
        seed=seed,
        held_out=values,
        training=training or {},
        chance=CHANCE,
        model_dir=f"runs/{control}/seed{seed}",
        removes=TASK.controls(),
        titles={m.name: m.title for m in MEASURED},
    )


def test_verdicts_compare_the_seed_mean_of_each_removed_head_with_chance():
    # Stop 29's shuffled_frames video direction (seeds 0-2) and a label control that holds.
    runs = [
        planted("none", 0),
        planted(
            "shuffled_frames",
            0,
            {"direction_accuracy_video": 0.484},
            direction_accuracy_video=0.583,
            direction_accuracy_audio=0.508,
        ),
        planted(
            "shuffled_frames",
            1,
            {"direction_accuracy_video": 0.511},
            direction_accuracy_video=0.484,
            direction_accuracy_audio=0.526,
        ),
        planted(
            "shuffled_frames",
            2,
            {"direction_accuracy_video": 0.560},
            direction_accuracy_video=0.630,
            direction_accuracy_audio=0.529,
        ),
        planted("unrelated_audio", 0, order_accuracy_cross=0.328, retrieval_r1_v2a=0.026),
    ]
    found = {(v.control, v.metric): v for v in controls.verdicts(runs)}
    # Only the heads each control removes; 'none' removes nothing.
    assert sorted(found) == [
        ("shuffled_frames", "direction_accuracy_audio"),
        ("shuffled_frames", "direction_accuracy_video"),
        ("unrelated_audio", "order_accuracy_cross"),
        ("unrelated_audio", "retrieval_r1_v2a"),
    ]
    video = found["shuffled_frames", "direction_accuracy_video"]
    assert video.mean == pytest.approx((0.583 + 0.484 + 0.630) / 3)  # 0.5657
    assert not video.mean_holds
    assert video.singles_outside == [0, 2]  # 0.083 and 0.130 from 0.5; 0.016 is within.
    assert video.training_outside == [2]  # 0.060 from chance
    assert video.line() == (
        "shuffled_frames / direction_accuracy_video: chance 0.500, held-out mean 0.566 ± 0.043 "
        "(s.e.) over 3 seeds (single runs 0.484-0.630, 2 of 3 outside ± 0.05); training views "
        "0.484-0.560 (1 of 3 outside): mean NOT within chance ± 0.05"
    )
    assert video.standard_error == pytest.approx(np.std([0.583, 0.484, 0.630], ddof=1) / 3**0.5)
    audio = found["shuffled_frames", "direction_accuracy_audio"]
    assert audio.mean == pytest.approx(0.521) and audio.mean_holds and audio.training == {}
    cross = found["unrelated_audio", "order_accuracy_cross"]
    assert cross.line() == (
        "unrelated_audio / order_accuracy_cross: chance 0.333, held-out "
        "0.328 (one seed): within chance ± 0.05"
    )
    assert controls.summary(list(found.values())) == (
        "controls: seed mean NOT within chance ± 0.05 for shuffled_frames / "
        "direction_accuracy_video (over 1-3 seeds)"
    )
    # The boundary: exactly the margin away is within it (0.55 - 0.5 is 0.05000000000000004).
    edge = controls.verdicts(
        [
            planted(
                "shuffled_frames", 0, direction_accuracy_video=0.55, direction_accuracy_audio=0.45
            )
        ]
    )
    assert [v.mean_holds for v in edge] == [True, True]
    assert controls.summary(edge) == (
        "controls: every removed head's seed mean within chance ± 0.05 (over 1 seed)"
    )
    # A wider margin is the caller's.
    assert controls.verdicts(runs, margin=0.1)[0].mean_holds


def test_every_control_and_head_of_the_task_is_measured():
    from avts_tf.experiments.controls import CONTROLS as OFFERED
    from avts_tf.tasks.temporal.task import CONTROLS

    assert tuple(TASK.controls()) == CONTROLS == OFFERED  # avts-controls offers these names.
    assert HEADS == tuple(TASK.accuracy)
    assert CHANCE == {
        m: {"speed": 1 / 3, "direction": 1 / 2, "order": 1 / 3, "retrieval": 1 / 32}[
            m.split("_")[0]
        ]
        for m in CONTROLLED
    }


def test_the_label_control_removes_every_head_and_the_table_marks_them():
    runs = [
        planted("permuted_labels", seed, **{m: 0.3 + 0.1 * seed for m in HEADS}) for seed in (1, 0)
    ] + [planted("none", 0)]
    found = controls.verdicts(runs)
    assert [v.metric for v in found] == list(HEADS)  # Not retrieval: ids stay true.
    assert all(v.mean == pytest.approx(0.35) and v.held_out == {1: 0.4, 0: 0.3} for v in found)
    lines = controls.table(runs).splitlines()
    assert lines[0].split() == [
        "control",
        "seed",
        "speed",
        "v",
        "speed",
        "a",
        "dir",
        "v",
        "dir",
        "a",
        "order",
        "v",
        "order",
        "a",
        "order",
        "v-a",
        "R@1",
        "v->a",
    ]
    # Seeds in order, then their mean; removed heads starred, retrieval not.
    assert lines[2].split() == ["permuted_labels", "0", *["0.300*"] * 7, "0.900"]
    assert lines[3].split() == ["permuted_labels", "1", *["0.400*"] * 7, "0.900"]
    assert lines[4].split() == ["permuted_labels", "mean", *["0.350*"] * 7, "0.900"]
    assert lines[5].split() == ["none", "0", *["0.900"] * 8]
    assert lines[6].split() == [
        "chance",
        "0.333",
        "0.333",
        "0.500",
        "0.500",
        "0.333",
        "0.333",
        "0.333",
        "0.031",
    ]
    assert controls.summary([]) == (
        "controls: none run (only 'none'): nothing to compare with chance"
    )


@pytest.mark.slow
def test_controls_tool_trains_reuses_and_refuses(tmp_path, monkeypatch):
    """Two tiny runs through ``avts-controls``: table and JSON from the runs' own files."""
    from avts_tf.evaluation.run_curves import read_scalars

    monkeypatch.setenv("AVTS_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "controls"
    tiny = [
        "--gin_param=data.synthetic_dataset.num_videos=8",  # 6 train, 2 held out
        "--gin_param=train.Trainer.train_steps=4",
        "--gin_param=train.Trainer.steps_per_epoch=2",
        "--gin_param=train.Evaluation.clips_per_video=1",
    ]
    args = [f"--output_dir={out}", "--controls=shuffled_frames", "--seeds=3,0", *tiny]
    code, stdout, stderr = run_in_process("controls", *args)
    assert code == 0, stderr
    written = json.loads((out / "controls.json").read_text())
    assert [(r["control"], r["seed"]) for r in written["runs"]] == [
        ("shuffled_frames", 3),
        ("shuffled_frames", 0),
    ]
    for run in written["runs"]:
        model_dir = out / "shuffled_frames" / f"seed{run['seed']}"
        assert json.loads((model_dir / "run.json").read_text())["seed"] == run["seed"]
        held_out = json.loads((model_dir / "eval.json").read_text())
        assert run["held_out"] == {m: held_out[m] for m in CONTROLLED}
        logged = read_scalars(model_dir / "tensorboard")["train"]
        assert run["training"] == {h: logged[f"epoch_{h}"][-1][1] for h in HEADS}
        # Two held-out videos: recall@1 is 1/2 by chance.
        assert run["chance"]["retrieval_r1_v2a"] == 0.5
        assert run["chance"]["speed_accuracy_video"] == pytest.approx(1 / 3)
    verdict = written["verdicts"][0]
    assert verdict["metric"] == "direction_accuracy_video"
    assert verdict["held_out"] == {
        str(r["seed"]): r["held_out"]["direction_accuracy_video"] for r in written["runs"]
    }
    table = (out / "table.md").read_text()
    assert stdout.strip().endswith(table.strip())
    assert table.strip().splitlines()[-1].startswith("controls: ")

    # The same command reuses both runs; other bindings for them are refused in one line.
    code, stdout, stderr = run_in_process("controls", *args)
    assert code == 0, stderr
    assert "[shuffled_frames seed 3] reused" in stdout
    assert (out / "table.md").read_text() == table
    code, _, stderr = run_in_process("controls", *args[:-1])
    assert_one_error_line(code, stderr, "seed3 holds a run of recipes", "--fresh")
    # A run folder of another control or seed is refused too.
    (out / "shuffled_frames" / "seed3").rename(out / "shuffled_frames" / "seed5")
    code, _, stderr = run_in_process("controls", *args[:2], "--seeds=5", *tiny)
    assert_one_error_line(code, stderr, "holds a run of control 'shuffled_frames' at seed 3")
    # A recipe of another task is refused before anything is trained or written.
    code, _, stderr = run_in_process(
        "controls",
        f"--output_dir={tmp_path / 'avts'}",
        "--controls=none",
        "--seeds=0",
        "--gin_file=quickstart",
    )
    assert_one_error_line(
        code, stderr, "quickstart trains objectives.contrastive", "@objectives.temporal"
    )
    assert not (tmp_path / "avts" / "none" / "seed0").exists()
