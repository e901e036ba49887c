"""Ingestion, the first stage: media files -> prepared TFRecord shards + ``manifest.json``.

* ``media``: PyAV decoding of one file (frames as JPEG, audio resampled), with its errors.
* ``sources``: where the files are and how they are laid out (folders, lists, labels).
* ``prepare``: ``prepare_dataset``: plans shards, writes them resumably, writes the manifest.
* ``segments``: the pieces a file longer than ``max_record_s`` is stored as.
* ``synthetic``: the built-in synthetic world of real mp4 files with real sound.
* ``datasets``: gin entry points (``data.synthetic_dataset``, ``data.prepared_dataset``).

The second stage, reading, is ``avts_tf.data`` itself: ``records`` (the record format),
``manifest``, ``splits``, ``clips`` and the ``pipeline`` reader.
"""
