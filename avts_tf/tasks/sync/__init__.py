"""The AVTS synchronization task (Korbar, Tran and Torresani, NeurIPS 2018).

* ``objectives``: ``ContrastiveSync`` and ``FusionSync``: examples (the aligned clip and
  its same-video negatives), easy negatives over the batch, loss and metrics.
* ``samplers``: easy / hard / super-hard negatives, exact to the audio sample.
* ``curricula``: step -> mixture of negative kinds.
* ``losses``, ``metrics``: the contrastive loss with margin, balanced sync accuracy.
"""
