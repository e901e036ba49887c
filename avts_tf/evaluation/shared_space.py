"""Where a run compares video with audio: the space cross-modal retrieval ranks in.

The run's task says (``Task.shared_space``): AVTS's contrastive loss compares the two
towers' outputs directly, so they share a space; the temporal task compares them only
after its projection heads (L2-normalised), so its towers' raw outputs are two unrelated
spaces and ranking one against the other is chance; a run of several tasks is compared
through the first of its tasks that has heads. The heads' weights come from the run's
newest checkpoint: the last batch of a finished run (``train.run`` always checkpoints it)
or the newest of a run still training, as the towers of such a run do
(``avts_tf.evaluation.checkpoint``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras

from avts_tf.evaluation import checkpoint
from avts_tf.models import AVTSModel


@dataclasses.dataclass(frozen=True)
class SharedSpace:
    """The heads that take each tower's output into the shared space (none: the outputs).

    Attributes:
        name: What the space is, for reports.
        video_head: Maps the video tower's output, or ``None``.
        audio_head: Maps the audio tower's output, or ``None``.
    """

    name: str
    video_head: keras.layers.Layer | None = None
    audio_head: keras.layers.Layer | None = None

    def head(self, which: str) -> keras.layers.Layer | None:
        """The ``"video"`` or ``"audio"`` head."""
        return self.video_head if which == "video" else self.audio_head

    def freshly_initialised(self) -> SharedSpace:
        """The same heads with new random weights (the baseline of untrained towers)."""
        if self.video_head is None:
            return self
        return dataclasses.replace(
            self,
            name=f"{self.name}, freshly initialised",
            video_head=checkpoint.fresh_copy(self.video_head),
            audio_head=checkpoint.fresh_copy(self.audio_head),
        )


TOWER_OUTPUTS = SharedSpace("tower outputs")


def of_run(model_dir: str | Path, video: keras.Model, audio: keras.Model) -> SharedSpace:
    """The space run ``model_dir`` compares its towers' outputs in (its task's heads).

    Where the task has no ``shared_space``, the towers' outputs.

    Args:
        model_dir: A training run's folder.
        video: The run's video tower (``checkpoint.load_tower``); its weights are kept.
        audio: The run's audio tower; its weights are kept.

    Raises:
        UserError: If the run has no ``run.json``, or its heads have no checkpoint to come
            from, or the checkpoint does not fit the run.
    """
    task = checkpoint.run_description(model_dir).build_task()
    model = AVTSModel(video, audio, task)
    projections = task.shared_space(model)
    if projections is None:
        return TOWER_OUTPUTS
    checkpoint.load_task_weights(model, model_dir, projections.why)
    return SharedSpace(projections.name, projections.video, projections.audio)
