"""A run's curves read back from TensorBoard logs and drawn."""

from __future__ import annotations

import pytest
import tensorflow as tf

from avts_tf.errors import UserError
from avts_tf.evaluation import run_curves


def test_curves_of_train_and_validation_logs(tmp_path):
    logs = tmp_path / "tensorboard"
    for stage, values in (("train", [0.9, 0.5, 0.25]), ("validation", [0.8, 0.6])):
        writer = tf.summary.create_file_writer(str(logs / stage))
        with writer.as_default():
            for step, value in enumerate(values):
                tf.summary.scalar("epoch_loss", value, step=step)
                tf.summary.scalar("epoch_sync_accuracy", 1 - value, step=step)
                tf.summary.scalar("epoch_learning_rate", 0.1, step=step)
        writer.close()
    scalars = run_curves.read_scalars(logs)
    steps, values = zip(*scalars["train"]["epoch_loss"], strict=True)
    assert steps == (0, 1, 2) and values == pytest.approx([0.9, 0.5, 0.25])
    assert [v for _, v in scalars["validation"]["epoch_sync_accuracy"]] == pytest.approx([0.2, 0.4])
    drawn = run_curves.plot_run(tmp_path, tmp_path / "curves.png")
    assert drawn == ["epoch_loss", "epoch_sync_accuracy"]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UserError, match="no TensorBoard logs under"):
        run_curves.read_scalars(tmp_path / "empty")


def test_a_log_torn_by_a_kill_is_read_up_to_its_last_whole_record(tmp_path, caplog):
    logs = tmp_path / "tensorboard"
    writer = tf.summary.create_file_writer(str(logs / "train"))
    with writer.as_default():
        for step, value in enumerate([0.9, 0.5, 0.25]):
            tf.summary.scalar("epoch_loss", value, step=step)
    writer.close()
    (events,) = (logs / "train").iterdir()
    events.write_bytes(events.read_bytes()[:-7])  # The last record cut mid-write (kill -9).
    steps, values = zip(*run_curves.read_scalars(logs)["train"]["epoch_loss"], strict=True)
    assert steps == (0, 1) and values == pytest.approx([0.9, 0.5])
    assert "ends in a torn record" in caplog.text
