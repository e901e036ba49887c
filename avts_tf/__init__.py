"""avts_tf: audio-visual self-supervision (AVTS and temporal AV contrastive) in TF 2 / Keras 3."""

__version__ = "0.1.0"
