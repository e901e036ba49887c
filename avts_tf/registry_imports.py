"""Imports every built-in module that registers a part: towers, samplers, tasks, optimizers.

Importing a module registers its parts with the registries (``avts_tf.registry``), gin and
Keras' serialization. Library modules never import this list; the entry points do (the
commands through ``avts_tf.train``, ``RunDescription`` to rebuild a run's task), as TF
Model Garden's ``registry_imports`` does.
"""

import avts_tf.backbones  # noqa: F401  (towers and their layers)
import avts_tf.data.ingestion.datasets  # noqa: F401  (data.synthetic_dataset, ...)
import avts_tf.data.pipeline  # noqa: F401  (data.ClipSpec, data.train_dataset, ...)
import avts_tf.optimizers  # noqa: F401  (optimizers.DecoupledAdamW)
import avts_tf.tasks  # noqa: F401  (the task contract, MultiTask)
import avts_tf.tasks.sync.curricula  # noqa: F401
import avts_tf.tasks.sync.objectives  # noqa: F401
import avts_tf.tasks.sync.samplers  # noqa: F401
import avts_tf.tasks.temporal.task  # noqa: F401
