"""Checks of a prepared dataset's shards: readable records, counts and ids as in the manifest.

TFRecord files carry a CRC of every record's length and data; a flipped byte or a cut
file shows as ``DataLossError`` when read. :func:`check_shards` reads every shard and
compares what it finds with ``manifest.json``; :func:`first_corrupt` finds the shard and
byte offset of the first unreadable record of a split (the training job's message).
"""

from __future__ import annotations

import dataclasses
import os
import re

import tensorflow as tf

from avts_tf.data import records
from avts_tf.data.manifest import Manifest
from avts_tf.data.pipeline import shard_files


@dataclasses.dataclass(frozen=True)
class ShardProblem:
    """What is wrong with one shard.

    Attributes:
        file: The shard's path.
        problem: One line: a corrupted record and its byte offset, a count or ids that
            differ from the manifest, or a missing file.
        offset: Byte offset of the corrupted record (``None`` for other problems).
    """

    file: str
    problem: str
    offset: int | None = None


def _read_ids(path: str) -> tuple[list[str], ShardProblem | None]:
    """The record ids of shard ``path`` up to its first unreadable record."""
    ids: list[str] = []
    try:
        for serialized in tf.data.TFRecordDataset(path).map(lambda s: records.parse(s)["id"]):
            ids.append(serialized.numpy().decode())
    except tf.errors.DataLossError as err:
        found = re.search(r"corrupted record at (\d+)", str(err))
        offset = int(found.group(1)) if found else None
        where = f"at byte {offset}" if offset is not None else "(truncated)"
        return ids, ShardProblem(
            path, f"corrupted record {where} after {len(ids)} good record(s)", offset
        )
    except tf.errors.NotFoundError:
        return ids, ShardProblem(path, "shard file missing")
    except tf.errors.InvalidArgumentError as err:  # bytes that are not our records
        return ids, ShardProblem(path, f"unreadable record: {str(err).splitlines()[0]}")
    return ids, None


def check_shards(data_dir: str | os.PathLike) -> list[ShardProblem]:
    """Reads every shard of a prepared dataset; returns its problems (empty: all good).

    Each shard must read to its end, hold the number of records the manifest gives it,
    and hold exactly the ids the manifest lists for it.
    """
    manifest = Manifest.read(data_dir)
    expected_ids: dict[str, list[str]] = {}
    for entry in manifest.written:
        shard = getattr(entry, "shard", None)
        if shard:
            expected_ids.setdefault(os.path.basename(shard), []).extend(entry.record_ids())
    problems = []
    for _, info in sorted(manifest.splits.items()):
        for shard in info.shards:
            path = os.path.join(os.fspath(data_dir), os.path.basename(shard.file))
            ids, problem = _read_ids(path)
            if problem:
                problems.append(problem)
                continue
            if len(ids) != shard.records:
                problems.append(
                    ShardProblem(
                        path, f"holds {len(ids)} records, the manifest says {shard.records}"
                    )
                )
                continue
            want = expected_ids.get(os.path.basename(shard.file))
            if want is not None and sorted(ids) != sorted(want):
                missing = sorted(set(want) - set(ids))[:3]
                extra = sorted(set(ids) - set(want))[:3]
                problems.append(
                    ShardProblem(
                        path,
                        f"ids differ from the manifest (missing {missing}, unexpected {extra})",
                    )
                )
    return problems


def first_corrupt(data_dir: str | os.PathLike, split: str) -> ShardProblem | None:
    """The first shard of ``split`` with an unreadable record (``None``: all read)."""
    for path in shard_files(data_dir, split):
        _, problem = _read_ids(path)
        if problem is not None:
            return problem
    return None
