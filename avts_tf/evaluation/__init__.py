"""Downstream evaluation of AVTS towers.

Modules, one job each:

* ``checkpoint``: towers and clip settings from a ``.keras`` file or a training run.
* ``records_io``: prepared datasets (or raw folders prepared on the fly), labelled subsets.
* ``features``: frozen features of a chosen tower layer, per audio window or video clip.
* ``mfcc``: the MFCC baseline features.
* ``audio_probe``: evaluation protocols (folds) and the linear SVM probe.
* ``finetune``: action-recognition fine-tuning of the video tower (optionally fused with
  the audio tower) and video-level accuracy.
* ``sync``: audio-visual synchronization accuracy of a training run.
* ``report``: result tables and JSON.
"""
