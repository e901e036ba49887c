"""Backbone zoo: importing this package registers every tower in ``BACKBONES``.

Registered names: ``r3d_18``, ``mc2_18``, ``mc3_18``, ``r2plus1d_18``, ``i3d``,
``avts_audio_vgg``, ``audio_resnet18``. Build one with
``BACKBONES.build("mc3_18", input_shape=(8, 112, 112, 3), embedding_dim=128)``.

Towers use two registered custom layers (``avts_tf>VideoConv3D``,
``avts_tf>FusedBatchNormalization``), so ``import avts_tf.backbones`` before
``keras.models.load_model`` on a saved tower.

:mod:`avts_tf.backbones.torchvision_import` converts torchvision's ``r3d_18``,
``mc3_18`` and ``r2plus1d_18`` weights into these towers (``tools/import_torchvision.py``).
"""

from avts_tf.backbones import audio, i3d, video_resnet  # noqa: F401  (registers)
from avts_tf.backbones.common import torch_param_count

__all__ = ["torch_param_count"]
