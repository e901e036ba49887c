"""The task contract from outside the library: a user's task in its own module.

A toy task ("were this clip's frames reversed?") with its own example function, a head
and a state variable (a queue of the last embeddings and a count of examples) kept by
the post-step hook, is written to a temporary module, selected from a gin file through
``import`` and trained with ``python tools/train.py``: on one device, on two logical CPU
replicas, and killed with ``kill -9`` then re-run. Nothing under ``avts_tf/`` knows it.

A second toy task says where it compares audio with video (``Task.shared_space``: its own
projection heads); ``avts-eval-retrieval`` ranks a run of it in that space, with no
library edit either (the user's script imports the task, then runs the command).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kill9
import numpy as np
import pytest
from checks import subprocess_env
from tiny import REPO_ROOT, SPEC_GIN

TOY_MODULE = '''
"""A toy task: were this clip's frames played backwards?"""

import json

import gin
import keras
import numpy as np
import tensorflow as tf
import tiny

from avts_tf.registry import BACKBONES, OBJECTIVES
from avts_tf.tasks.base import Task, global_batch_size

QUEUE = 6
BACKBONES.register("toy_video_tower")(tiny.tiny_video_tower)
BACKBONES.register("toy_audio_tower")(tiny.tiny_audio_tower)


@OBJECTIVES.register("toy_reversal")
class ToyReversal(Task):
    headline = "reversal_accuracy"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.accuracy = keras.metrics.BinaryAccuracy(name="reversal_accuracy", threshold=0.0)

    def build_head(self, video_dim, audio_dim):
        self.head = keras.layers.Dense(1, name="reversal_head")
        self.head.build((None, video_dim))
        self.queue = self.add_state("queue", (QUEUE, video_dim))
        self.seen = self.add_state("seen", ())

    def _example(self, clips, record, start, training, seed):
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        example = clips.aligned(record, start, training, crop_seed)
        backwards = tf.random.stateless_uniform([], flip_seed) < 0.5
        video = example["video"]
        example["video"] = tf.where(backwards, tf.reverse(video, [0]), video)
        example["backwards"] = tf.cast(backwards, tf.float32)
        return example

    def train_example(self, clips, record, seed):
        start_seed, seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        return self._example(clips, record, clips.random_start(record, start_seed), True, seed)

    def eval_example(self, clips, record, seed, clip_index, num_clips):
        start = clips.evenly_spaced_start(record, clip_index, num_clips)
        return self._example(clips, record, start, False, seed)

    def compute(self, model, batch, training, step, global_batch=None):
        if global_batch is None:
            global_batch = global_batch_size(batch)
        embedding = tf.cast(model.video_tower(batch["video"], training=training), tf.float32)
        logits = self.head(embedding)[:, 0]
        labels = batch["backwards"]
        losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        loss = tf.math.divide_no_nan(tf.reduce_sum(losses), tf.cast(global_batch, tf.float32))
        self.accuracy.update_state(labels, logits)
        return loss, {}, {"embedding": embedding}

    def after_step(self, values, applied):
        new = values["embedding"]
        queue = tf.concat([new, tf.convert_to_tensor(self.queue)], 0)[:QUEUE]
        self.queue.assign(tf.where(applied, queue, self.queue))
        count = tf.cast(tf.shape(new)[0], tf.float32)
        self.seen.assign(self.seen + tf.where(applied, count, 0.0))

    def reported_metrics(self, training):
        return [self.accuracy]


@gin.configurable(module="toy")
class DumpState(keras.callbacks.Callback):
    """Writes every replica's copy of the task's state when training ends."""

    def __init__(self, path=gin.REQUIRED):
        super().__init__()
        self.path = path

    def on_train_end(self, logs=None):
        task, strategy = self.model.objective, self.model.distribute_strategy
        state = {
            name: [np.asarray(v).tolist() for v in strategy.experimental_local_results(var.value)]
            for name, var in (("queue", task.queue), ("seen", task.seen))
        }
        with open(self.path, "w") as f:
            json.dump(state, f)
'''

RECIPE = (
    """
import toy_reversal

train.Model.video_tower = @backbones.toy_video_tower
train.Model.audio_tower = @backbones.toy_audio_tower
train.Model.objective = @objectives.toy_reversal
train.run.callbacks = [@toy.DumpState()]
"""
    + kill9.SCHEDULE_GIN
    + SPEC_GIN
)


def _command(gin_file: Path, model_dir: Path, *params: str) -> list[str]:
    return [
        sys.executable,
        str(REPO_ROOT / "tools" / "train.py"),
        f"--gin_file={gin_file}",
        f"--model_dir={model_dir}",
        f"--gin_param=toy.DumpState.path='{model_dir}/state.json'",
        *(f"--gin_param={p}" for p in params),
    ]


def _state(model_dir: Path) -> dict:
    return json.loads((model_dir / "state.json").read_text())


@pytest.fixture()
def toy(tmp_path, tiny_prepared):
    module_dir = tmp_path / "user_code"
    module_dir.mkdir()
    (module_dir / "toy_reversal.py").write_text(TOY_MODULE)
    gin_file = tmp_path / "toy.gin"
    gin_file.write_text(RECIPE + f'train.run.dataset = "{tiny_prepared}"\n')
    return gin_file, subprocess_env(module_dir)


@pytest.mark.slow
def test_a_users_task_trains_on_one_and_two_replicas_and_resumes_exactly(tmp_path, toy):
    gin_file, env = toy
    before = subprocess.run(
        ["git", "status", "--porcelain", "avts_tf"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout
    one, two, killed = tmp_path / "one", tmp_path / "two", tmp_path / "killed"
    deterministic = "train.Runtime.deterministic=True"
    out, _, killed_at = kill9.reference_and_killed(
        _command(gin_file, one, deterministic),
        _command(gin_file, killed, deterministic),
        killed,
        12,
        env,
    )
    assert killed_at < 40 and not (killed / "state.json").exists()
    # The trainer prints the task's headline metric last.
    last = out.strip().splitlines()[-1]
    assert last.startswith("reversal_accuracy: ")
    accuracy = json.loads((one / "eval.json").read_text())["reversal_accuracy"]
    assert last == f"reversal_accuracy: {accuracy:.3f}"  # 0.4375 prints as 0.438

    resumed = subprocess.run(
        _command(gin_file, killed, deterministic),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"batch {killed_at}, step {killed_at}" in resumed.stderr
    # kill -9 and re-run: the state is restored from the checkpoint and ends bit-equal.
    assert _state(killed) == _state(one)

    replicas = subprocess.run(
        _command(gin_file, two, "train.make_strategy.cpu_replicas=2"),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert replicas.returncode == 0, replicas.stderr[-4000:]
    single, double = _state(one), _state(two)
    assert single["seen"] == [160.0]  # 40 steps of 4 examples
    assert double["seen"] == [160.0, 160.0]
    # Both replicas hold the same state, bit for bit ...
    np.testing.assert_array_equal(double["queue"][0], double["queue"][1])
    # ... and it is the one-device run's (the same examples; sums in another order).
    np.testing.assert_allclose(double["queue"][0], single["queue"][0], rtol=1e-4, atol=1e-5)
    assert np.abs(np.asarray(single["queue"][0])).sum() > 0  # the queue was filled
    after = subprocess.run(
        ["git", "status", "--porcelain", "avts_tf"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout
    assert after == before  # no file under avts_tf/ was touched


SPACE_MODULE = '''
"""A toy task comparing audio with video through its own projection heads."""

import keras
import tensorflow as tf

from avts_tf.tasks.base import Projections, Task

SPACE = "the toy task's projections"


@keras.saving.register_keras_serializable(package="toy")
class ToySpace(Task):
    def build_head(self, video_dim, audio_dim):
        self.video_head = keras.layers.Dense(4, name="toy_video")
        self.video_head.build((None, video_dim))
        self.audio_head = keras.layers.Dense(4, name="toy_audio")
        self.audio_head.build((None, audio_dim))

    def compute(self, model, batch, training, step, global_batch=None):
        video = self.video_head(model.video_tower(batch["video"], training=training))
        audio = self.audio_head(model.audio_tower(batch["audio"], training=training))
        return tf.reduce_mean(tf.square(video - audio)), {}

    def shared_space(self, model):
        return Projections(SPACE, self.video_head, self.audio_head, why="the toy task's heads")
'''

WRITE_RUN = """
import sys
import keras
import tiny
import toy_space
from avts_tf.models import AVTSModel

keras.utils.set_random_seed(0)
model = AVTSModel(tiny.tiny_video_tower(), tiny.tiny_audio_tower(), toy_space.ToySpace())
tiny.write_finished_run(__import__("pathlib").Path(sys.argv[1]), sys.argv[2], model)
"""


def test_a_users_task_gives_retrieval_its_shared_space(tmp_path, tiny_prepared):
    before = subprocess.run(
        ["git", "status", "--porcelain", "avts_tf"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout
    module_dir, run = tmp_path / "user_code", tmp_path / "run"
    module_dir.mkdir()
    run.mkdir()
    (module_dir / "toy_space.py").write_text(SPACE_MODULE)
    env = subprocess_env(module_dir)
    written = subprocess.run(
        [sys.executable, "-c", WRITE_RUN, str(run), str(tiny_prepared)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert written.returncode == 0, written.stderr[-4000:]
    # run.json names the task's module: the tool imports it to rebuild the task.
    assert json.loads((run / "run.json").read_text())["task"]["module"] == "toy_space"
    out = tmp_path / "r.json"
    # The user's script imports their task (registering it), then runs the command.
    command = "import toy_space; from avts_tf.cli.eval_retrieval import main; main()"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            command,
            f"--checkpoint={run}",
            f"--data={tiny_prepared}",
            "--num_clips=1",
            f"--output_json={out}",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "audio <-> video compared in the toy task's projections" in result.stdout
    assert json.loads(out.read_text())["pretrained"]["cross_modal_space"] == (
        "the toy task's projections"
    )
    after = subprocess.run(
        ["git", "status", "--porcelain", "avts_tf"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout
    assert after == before  # no file under avts_tf/ was touched
