"""Where a run compares video with audio: the space cross-modal retrieval ranks in.

AVTS's contrastive loss compares the two towers' outputs directly, so they share a space.
The temporal task (``objectives.temporal``) compares them only after its projection heads
(``project_video``, ``project_audio``; L2-normalised), so its towers' raw outputs are two
unrelated spaces and ranking one against the other is chance. A run of several tasks
(``objectives.multi``) that holds a temporal task is compared through that task's heads.
The heads' weights come from the run's newest checkpoint: the last batch of a finished run
(``train.run`` always checkpoints it) or the newest of a run still training, as the towers
of such a run do (``avts_tf.evaluation.checkpoint``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras

from avts_tf.evaluation import checkpoint


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
            self, name=f"{self.name}, freshly initialised",
            video_head=checkpoint.fresh_copy(self.video_head),
            audio_head=checkpoint.fresh_copy(self.audio_head))


TOWER_OUTPUTS = SharedSpace("tower outputs")
TEMPORAL_PROJECTIONS = "the temporal task's projections (project_video, project_audio)"


def _temporal_task(task: keras.layers.Layer):
    from avts_tf.tasks.multi import MultiTask
    from avts_tf.tasks.temporal.task import TemporalContrastive

    found = list(task.tasks.values()) if isinstance(task, MultiTask) else [task]
    return next((t for t in found if isinstance(t, TemporalContrastive)), None)


def of_run(model_dir: str | Path, video: keras.Model, audio: keras.Model) -> SharedSpace:
    """The space run ``model_dir`` compares its towers' outputs in (see module docstring).

    Args:
        model_dir: A training run's folder.
        video: The run's video tower (``checkpoint.load_tower``); its weights are kept.
        audio: The run's audio tower; its weights are kept.

    Raises:
        UserError: If the run has no ``run.json``, or its heads have no checkpoint to come
            from, or the checkpoint does not fit the run.
    """
    from avts_tf.models import AVTSModel

    task = checkpoint.run_description(model_dir).build_task()
    temporal = _temporal_task(task)
    if temporal is None:
        return TOWER_OUTPUTS
    checkpoint.load_task_weights(
        AVTSModel(video, audio, task), model_dir,
        "the run's temporal task compares audio and video through trained projection heads")
    return SharedSpace(TEMPORAL_PROJECTIONS, temporal.heads["project_video"],
                       temporal.heads["project_audio"])
