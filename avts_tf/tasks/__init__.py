"""Tasks: what each self-supervised method brings (examples, loss, metrics, state).

``base.Task`` is the contract; ``multi.MultiTask`` trains several tasks in one step.
The AVTS synchronization task lives in ``avts_tf.tasks.sync.objectives`` (``ContrastiveSync``,
``FusionSync``); every task is registered in ``avts_tf.registry.OBJECTIVES``.
"""

from avts_tf.tasks.base import Task, global_batch_size, local_batch_size
from avts_tf.tasks.multi import MultiTask

__all__ = ["MultiTask", "Task", "global_batch_size", "local_batch_size"]
