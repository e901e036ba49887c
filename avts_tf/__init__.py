"""avts_tf: audio-visual self-supervision (AVTS and temporal AV contrastive) in TF 2 / Keras 3."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``avts_tf.load_towers`` without importing TensorFlow at ``import avts_tf``."""
    if name in ("load_towers", "LoadedTowers"):
        from avts_tf import portable  # loads TensorFlow: not at ``import avts_tf``

        return getattr(portable, name)
    raise AttributeError(f"module 'avts_tf' has no attribute {name!r}")
