"""Atomic writes of small text and JSON files, local or remote (``gs://`` and the like).

A reader never sees half a file: the text goes to a temporary name in the same folder,
then is renamed over the target. Local files are flushed and fsynced before the rename,
so a crash leaves the old file or the new one. Remote paths go through ``tf.io.gfile``
(on object stores a finished upload appears whole), so a ``model_dir`` on a bucket works.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any


def _is_remote(path: str) -> bool:
    return "://" in path


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically; creates the parent folder."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}")
    if _is_remote(path):
        import tensorflow as tf  # remote paths only: this module is TensorFlow-free

        tf.io.gfile.makedirs(folder)
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(text)
        tf.io.gfile.rename(tmp, path, overwrite=True)
        return
    if folder:
        os.makedirs(folder, exist_ok=True)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(
    path: str | os.PathLike,
    data: Mapping[str, Any],
    indent: int = 2,
    sort_keys: bool = True,
    ensure_ascii: bool = True,
) -> None:
    """Writes ``data`` as JSON with a final newline, atomically (see :func:`write_text`)."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)
    write_text(path, text + "\n")
