"""Experiments that train runs and then evaluate them (above ``train`` in the layering).

* ``controls``: the temporal task's controls, one run per control and seed
  (``avts-controls``); the statistics live in ``avts_tf.evaluation.controls``.
* ``ablation``: the curriculum ablation of AVTS (``avts-ablate``).
* ``downstream``: pretrained runs (trained first where missing) against random init and
  MFCC on downstream probes and fine-tuning (``avts-downstream``).
"""
