"""Disjoint splits: no source file and no id may be in two splits of one dataset.

A video in both the training and the test split makes every held-out number
optimistic, and nothing downstream could tell. The check runs twice:

* at ingestion (``ingest.prepare_dataset``), on the input listing, before anything is
  decoded or written;
* before training (``train.run``), on the manifest's ``written`` entries of
  ``train_split`` and ``eval_split`` (datasets prepared by an older version, or
  manifests edited by hand).

Two entries are the same file when their paths have the same real path
(``os.path.realpath``: symlinks and ``..`` resolved), whatever their ids; several cuts of
one file (``start``/``end``) may share a split, not two.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from avts_tf.data.manifest import Manifest, manifest_path
from avts_tf.errors import UserError

SHOWN = 5  # Offenders named in the error; the rest are counted.


class OverlappingSplits(UserError):
    """A source file or an id is in more than one split (reported as one line by the tools)."""


def _fields(entry: Any) -> tuple[str, str | None, str]:
    """``(id, path, split)`` of a ``sources.SourceItem``, a manifest entry or its dict."""
    if isinstance(entry, Mapping):
        return str(entry["id"]), entry.get("path") or None, str(entry.get("split", "train"))
    return str(entry.id), entry.path or None, str(entry.split)


def find_overlaps(
    entries: Iterable[Any], splits: Collection[str] | None = None
) -> list[tuple[str, tuple[str, ...]]]:
    """Ids and files found in more than one split.

    Args:
        entries: ``sources.SourceItem`` objects, ``manifest.WrittenEntry`` objects or dicts
            with ``id``, ``split`` and optionally ``path``.
        splits: Only entries of these splits are compared (``None``: all).

    Returns:
        ``(description, splits)`` per offender, sorted: first each shared id
        (``"id 'x'"``), then each shared file whose overlap is not already one of those
        ids (``"file '/real/path' (ids 'x', 'y')"``); ``splits`` sorted.
    """
    id_splits: dict[str, set[str]] = collections.defaultdict(set)
    file_splits: dict[str, set[str]] = collections.defaultdict(set)
    file_ids: dict[str, set[str]] = collections.defaultdict(set)
    for entry in entries:
        id_, path, split = _fields(entry)
        if splits is not None and split not in splits:
            continue
        id_splits[id_].add(split)
        if path is not None:
            real = os.path.realpath(path)
            file_splits[real].add(split)
            file_ids[real].add(id_)
    shared_ids = {i for i, s in id_splits.items() if len(s) > 1}
    found = [(f"id {i!r}", tuple(sorted(id_splits[i]))) for i in sorted(shared_ids)]
    for real in sorted(file_splits):
        if len(file_splits[real]) > 1 and not file_ids[real] <= shared_ids:
            ids = ", ".join(repr(i) for i in sorted(file_ids[real]))
            found.append((f"file {real!r} (ids {ids})", tuple(sorted(file_splits[real]))))
    return found


def _count(found: list) -> str:
    return f"{len(found)} {'id or file' if len(found) == 1 else 'ids or files'}"


def _listing(found: list[tuple[str, tuple[str, ...]]]) -> str:
    shown = "; ".join(f"{name} in {', '.join(s)}" for name, s in found[:SHOWN])
    return shown + (f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else "")


def check_disjoint(entries: Iterable[Any], *, source: str) -> None:
    """Refuses an input listing in which an id or a file is in two splits.

    Args:
        entries: The listing (``sources.SourceItem`` objects or manifest entries).
        source: What the listing came from, for the message (the input path).

    Raises:
        OverlappingSplits: Naming up to five offenders and how many there are.
    """
    found = find_overlaps(entries)
    if found:
        raise OverlappingSplits(
            f"{source}: {_count(found)} in more than one split (training and evaluation "
            f"would share data): {_listing(found)}; give each file and id one split in the "
            "input list"
        )


def check_manifest(data_dir: str | os.PathLike, train_split: str, eval_split: str) -> None:
    """Refuses to train on ``train_split`` and evaluate on ``eval_split`` if they overlap.

    Compares the ``written`` entries of the prepared dataset's ``manifest.json`` (ids and
    real paths). Nothing is checked when both splits are the same split.

    Raises:
        OverlappingSplits: Naming up to five shared ids or files and how many there are.
        FileNotFoundError: If ``data_dir`` has no manifest.
    """
    if train_split == eval_split:
        return
    found = find_overlaps(Manifest.read(data_dir).written, {train_split, eval_split})
    if found:
        raise OverlappingSplits(
            f"{manifest_path(data_dir)}: train split {train_split!r} and eval split "
            f"{eval_split!r} share {_count(found)}: {_listing(found)}; re-prepare the dataset "
            "with disjoint splits (tools/prepare_data.py refuses overlapping lists) or choose "
            "other splits"
        )
