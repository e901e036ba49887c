"""A run resumed mid-curriculum is in the same stage, with the same negative draws.

The curriculum is a function of ``optimizer.iterations``, so restoring the optimizer's
step (``BackupAndRestore`` as in ``train.run``, or ``save_weights`` + ``load_weights``)
is all a resumed run needs.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import tiny_audio_tower, tiny_video_tower

from avts_tf.models import AVTSModel
from avts_tf.tasks.sync.curricula import StepSwitch
from avts_tf.tasks.sync.objectives import ContrastiveSync

SWITCH = 3  # Steps 0-2 easy only, then 50% easy / 50% hard.
STEPS_PER_EPOCH = 2
EPOCHS = 3
LOGGED = ("curriculum/stage", "curriculum/easy", "curriculum/hard")


def make_model() -> AVTSModel:
    keras.utils.set_random_seed(0)
    curriculum = StepSwitch([SWITCH], [{"easy": 1.0}, {"easy": 0.5, "hard": 0.5}])
    model = AVTSModel(
        tiny_video_tower((4, 8, 8, 3), embedding_dim=4),
        tiny_audio_tower((8, 8, 1), embedding_dim=4),
        ContrastiveSync(curriculum=curriculum, eval_kinds=("easy", "hard")),
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def dataset() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    n = 64
    examples = {
        "video": rng.uniform(size=(n, 4, 8, 8, 3)).astype(np.float32),
        "audio": rng.uniform(size=(n, 8, 8, 1)).astype(np.float32),
        "audio_hard": rng.uniform(size=(n, 8, 8, 1)).astype(np.float32),
        "valid_hard": np.ones(n, bool),
        "video_id": np.arange(n, dtype=np.int64),  # Every easy negative is kept.
    }
    return tf.data.Dataset.from_tensor_slices(examples).batch(8, drop_remainder=True).repeat()


class StepLog(keras.callbacks.Callback):
    """Per executed step: the curriculum logs and the drawn share of hard negatives."""

    def __init__(self, crash_after: int | None = None) -> None:
        super().__init__()
        self.crash_after = crash_after
        self.steps: dict[int, dict[str, float]] = {}
        self._hard_seen = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._previous = (0.0, 0)

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy()) - 1  # The step just run.
        # ``negatives_hard`` is a running mean over the epoch: recover this step's share.
        mean, seen = float(logs["negatives_hard"]), batch + 1
        this_step = mean * seen - self._previous[0] * self._previous[1]
        self._previous = (mean, seen)
        self.steps[step] = {**{k: float(logs[k]) for k in LOGGED}, "hard_share": this_step}
        if self.crash_after is not None and step + 1 == self.crash_after:
            raise KeyboardInterrupt("simulated crash")


@pytest.fixture(scope="module")
def reference() -> dict[int, dict[str, float]]:
    """Per-step logs of the uninterrupted run."""
    log = StepLog()
    make_model().fit(
        dataset(), steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS, verbose=0, callbacks=[log]
    )
    return log.steps


def assert_same_steps(resumed, reference, steps):
    for step in steps:
        for key in (*LOGGED, "hard_share"):
            assert resumed[step][key] == pytest.approx(reference[step][key], abs=1e-6), (step, key)


def test_reference_run_switches_stage(reference):
    steps = reference
    assert sorted(steps) == list(range(STEPS_PER_EPOCH * EPOCHS))
    assert [steps[s]["curriculum/stage"] for s in sorted(steps)] == [0, 0, 0, 1, 1, 1]
    assert all(steps[s]["hard_share"] == 0 for s in range(SWITCH))
    assert any(steps[s]["hard_share"] > 0 for s in range(SWITCH, 6))


def test_backup_and_restore_resumes_in_the_same_stage(tmp_path, reference):
    backup = str(tmp_path / "backup")
    first = StepLog(crash_after=SWITCH + 1)  # Crashes in epoch 1, after the switch.
    with pytest.raises(KeyboardInterrupt):
        make_model().fit(
            dataset(),
            steps_per_epoch=STEPS_PER_EPOCH,
            epochs=EPOCHS,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup), first],
        )
    assert max(first.steps) == SWITCH  # It ran the first step of the hard stage.
    resumed_model = make_model()  # A fresh process: new model, new optimizer at step 0.
    second = StepLog()
    resumed_model.fit(
        dataset(),
        steps_per_epoch=STEPS_PER_EPOCH,
        epochs=EPOCHS,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup), second],
    )
    # The last backup was at the end of epoch 0 (step 2): steps 2-5 run again, and the
    # stage, mixture and drawn negative kinds equal the uninterrupted run's.
    assert sorted(second.steps) == [2, 3, 4, 5]
    assert_same_steps(second.steps, reference, [2, 3, 4, 5])
    assert int(resumed_model.optimizer.iterations.numpy()) == STEPS_PER_EPOCH * EPOCHS


def test_save_weights_and_load_into_a_fresh_model_keeps_the_step(tmp_path, reference):
    model = make_model()
    model.fit(dataset(), steps_per_epoch=STEPS_PER_EPOCH, epochs=2, verbose=0)  # Steps 0-3.
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)

    fresh = make_model()
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(path)
    assert int(fresh.optimizer.iterations.numpy()) == 4
    log = StepLog()
    fresh.fit(dataset(), steps_per_epoch=STEPS_PER_EPOCH, epochs=1, verbose=0, callbacks=[log])
    assert sorted(log.steps) == [4, 5]
    assert_same_steps(log.steps, reference, [4, 5])
