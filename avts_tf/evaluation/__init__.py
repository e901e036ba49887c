"""Downstream evaluation of AVTS towers and training runs (it never trains a run).

What a run's task offers evaluation (its shared space, its sync task, its controls) comes
from the task's methods (``avts_tf.tasks.base.Task``); no module here names a task.
Modules, one job each:

* ``checkpoint``: towers and clip settings from a ``.keras`` file or a training run.
* ``prepared``: the dataset a tool reads (a prepared folder, or media prepared first).
* ``records_io``: prepared datasets (or raw folders prepared on the fly), labelled subsets.
* ``features``: frozen features of a chosen tower layer, per audio window or video clip.
* ``mfcc``: the MFCC baseline features.
* ``audio_probe``: evaluation protocols (folds) and the linear SVM probe.
* ``finetune``: action-recognition fine-tuning of the video tower (optionally fused with
  the audio tower) and video-level accuracy.
* ``sync``: audio-visual synchronization accuracy of a training run.
* ``shared_space``, ``retrieval``: the space a run compares audio with video in; retrieval.
* ``fingerprint``, ``media_edit``: video fingerprinting against distorted copies.
* ``offset``: the audio-video offset of a media file.
* ``downstream``: probes and fine-tuning against random init and MFCC.
* ``controls``: training controls' runs against chance.
* ``run_curves``, ``plots``, ``report``: training curves, plots, result tables and JSON.
"""
