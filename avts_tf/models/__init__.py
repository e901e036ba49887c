from avts_tf.models.avts_model import AVTSModel

__all__ = ["AVTSModel"]
