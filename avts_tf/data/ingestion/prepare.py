"""Turning a list of media files into TFRecord shards and a manifest.

Output folder layout::

    OUT/{split}-{i:05d}-of-{n:05d}.tfrecord   one SequenceExample per ingested file
    OUT/manifest.json                         config, labels, shards, written, skipped
                                              (``avts_tf.data.manifest.Manifest``)
    OUT/.ingest/config.json                   config of the run that owns OUT
    OUT/.ingest/{shard}.json                  sidecar: the entries of one finished shard

Work is planned per shard: files are sorted by ``(split, id)`` and file ``k`` of a
split goes to shard ``k % n``, so the plan does not depend on the number of workers.
A shard is written under a temporary name and renamed when complete, after its
sidecar; a shard file that exists (with a sidecar matching the plan and config) is
finished and skipped by a re-run.  So an interrupted run, re-run with the same
command, writes only what is missing, and the manifest (rebuilt from the sidecars)
and the shards are byte-identical to those of an uninterrupted run.

Files are decoded in a process pool (``workers > 1``) with a bounded number in
flight; records go to the shard writer in plan order and are never all held in
memory.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import tensorflow as tf
from tqdm import tqdm

from avts_tf import atomic
from avts_tf.data import integrity, records, splits
from avts_tf.data import manifest as manifest_module
from avts_tf.data.ingestion import segments, sources
from avts_tf.data.ingestion.media import (
    MediaError,
    decode_media,
    header_problem,
    probe_duration,
)
from avts_tf.data.manifest import (
    DEFAULTS,
    IngestConfig,
    Manifest,
    Shard,
    SkippedEntry,
    SplitInfo,
    WrittenEntry,
)
from avts_tf.errors import RunInterrupted

logger = logging.getLogger(__name__)

STATE_DIR = ".ingest"
FILES_PER_SHARD = manifest_module.FILES_PER_SHARD  # Default shard size (``num_shards=None``).


@dataclass(frozen=True)
class ShardPlan:
    """One shard to write: its file name and its items in order."""

    name: str
    split: str
    items: tuple[sources.SourceItem, ...]
    label_indices: tuple[int, ...]


def shard_name(split: str, index: int, count: int) -> str:
    """``{split}-{index:05d}-of-{count:05d}.tfrecord``."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def plan_shards(
    items: list[sources.SourceItem], labels: list[str], num_shards: int | None = None
) -> list[ShardPlan]:
    """Assigns sorted items to shards: item ``k`` of a split goes to shard ``k % n``.

    Args:
        items: Inputs in canonical order.
        labels: The dataset's sorted label list.
        num_shards: Shards per split; ``None`` gives one per ``FILES_PER_SHARD`` files.
            Never more shards than files.

    Returns:
        Plans sorted by split, then shard index.
    """
    index = {label: i for i, label in enumerate(labels)}
    by_split: dict[str, list[sources.SourceItem]] = collections.defaultdict(list)
    for item in sources.sort_items(items):
        by_split[item.split].append(item)
    plans = []
    for split in sorted(by_split):
        group = by_split[split]
        n = num_shards or math.ceil(len(group) / FILES_PER_SHARD)
        n = max(1, min(n, len(group)))
        for i in range(n):
            chosen = tuple(group[i::n])
            plans.append(
                ShardPlan(
                    shard_name(split, i, n),
                    split,
                    chosen,
                    tuple(index.get(it.label, -1) for it in chosen),
                )
            )
    return plans


def _decode_settings(config: IngestConfig, decode_threads: int) -> dict:
    return dict(
        fps=config.fps,
        short_side=config.short_side,
        sample_rate=config.sample_rate,
        jpeg_quality=config.jpeg_quality,
        video_stream=config.video_stream,
        audio_stream=config.audio_stream,
        require_audio=config.require_audio,
        require_video=config.require_video,
        decode_threads=decode_threads,
    )


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_decoder(processes: int) -> int:
    """FFmpeg decoder threads for each of ``processes`` decoding side by side.

    The cores shared out, at least 1; ``0`` (FFmpeg's choice: one per core) for a single
    process. Frame threading in every worker of a pool that already keeps each core busy
    only adds contention (measured by ``benchmarks/ingest.py``: docs/performance.md).
    """
    return 0 if processes <= 1 else max(1, _usable_cores() // processes)


def _pieces(item: sources.SourceItem, config: IngestConfig) -> list[segments.Piece]:
    """The pieces ``item`` is stored as (one unless it is longer than ``max_record_s``)."""
    if config.max_record_s is None:
        return segments.plan_pieces(None, config.fps, None, config.record_overlap_s)
    end = item.end if item.end is not None else probe_duration(item.path)
    length = None if end is None else end - (item.start or 0.0)
    return segments.plan_pieces(length, config.fps, config.max_record_s, config.record_overlap_s)


def _media_record(
    item: sources.SourceItem, label_index: int, media, **piece
) -> records.MediaRecord:
    return records.MediaRecord(
        id=item.id,
        jpeg_frames=media.jpeg_frames,
        fps=media.fps,
        height=media.height,
        width=media.width,
        audio=media.audio,
        sample_rate=media.sample_rate,
        label=item.label,
        label_index=label_index,
        split=item.split,
        **piece,
    )


def _failure_entry(entry: dict, err: Exception) -> dict:
    if isinstance(err, MediaError):
        return {**entry, "kind": err.kind, "reason": err.reason}
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return {
        **entry,
        "kind": "error",
        "reason": f"unexpected error: {text} (please report this file)",
    }


@dataclass(frozen=True)
class SpilledRecords:
    """The records of a long file's pieces, in order, one TFRecord file per piece.

    Workers hand a long file's pieces over this way, so neither they nor the writer
    hold more than one piece in memory. Each piece's file is written once and closed,
    never appended to: an object store (``gs://``) uploads it once, where flushing one
    growing file would upload it again whole after every piece.
    """

    paths: tuple[str, ...]

    @property
    def count(self) -> int:
        """The number of records (pieces)."""
        return len(self.paths)

    def __iter__(self) -> Iterator[bytes]:
        for serialized in tf.data.TFRecordDataset(list(self.paths)):
            yield serialized.numpy()


Records = bytes | list[bytes] | SpilledRecords


def process_item(
    item: sources.SourceItem,
    label_index: int,
    config: IngestConfig,
    spill_dir: str | None = None,
    decode_threads: int = 0,
) -> tuple[dict, Records | None]:
    """Decodes and encodes one file (runs in a worker).

    A file longer than ``config.max_record_s`` becomes several records
    (``ingestion.segments``), decoded one piece at a time.

    Args:
        item: The input file.
        label_index: Its label's index (``-1``: unlabelled).
        config: The ingestion settings.
        spill_dir: Where a long file's pieces are written as they are made
            (:class:`SpilledRecords`); ``None``: they are returned as a list.
        decode_threads: FFmpeg decoder threads (``media.decode_media``; see
            :func:`threads_per_decoder`).

    Returns:
        The manifest entry and the serialized record, or the pieces' records in order
        (``None`` when skipped).
    """
    entry = {"path": item.path, "id": item.id, "label": item.label, "split": item.split}
    if item.start is not None or item.end is not None:
        entry.update(start=item.start, end=item.end)
    pieces = _pieces(item, config)
    if len(pieces) > 1:
        return _process_pieces(item, label_index, config, decode_threads, entry, pieces, spill_dir)
    try:
        media = decode_media(
            item.path, **_decode_settings(config, decode_threads), start=item.start, end=item.end
        )
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the run.
        return _failure_entry(entry, err), None
    record = _media_record(item, label_index, media)
    entry.update(
        records=1,
        num_frames=len(media.jpeg_frames),
        num_samples=int(media.audio.shape[0]),
        height=media.height,
        width=media.width,
        duration=round(record.duration, 6),
    )
    if media.warnings:
        entry["warnings"] = media.warnings
    return entry, records.encode(record)


def _process_pieces(
    item: sources.SourceItem,
    label_index: int,
    config: IngestConfig,
    decode_threads: int,
    entry: dict,
    pieces: list[segments.Piece],
    spill_dir: str | None,
) -> tuple[dict, Records | None]:
    """The records of a long file's pieces; a piece past the decodable end ends the file."""
    with _piece_sink(spill_dir, item) as out:
        entry, count = _decode_pieces(item, label_index, config, decode_threads, entry, pieces, out)
        if not count:
            return entry, None
        if spill_dir is None:
            return entry, out
        return entry, SpilledRecords(tuple(out.paths))


class _SpillWriter:
    """Writes each record to a spill file of its own (a list-like sink for ``_decode_pieces``).

    A new file per piece is also the worker's heartbeat (``_result``).
    """

    def __init__(self, spill_dir: str, item: sources.SourceItem):
        self.stem = os.path.join(spill_dir, f"{_spill_prefix(item)}{uuid.uuid4().hex}")
        self.paths: list[str] = []

    def append(self, record: bytes) -> None:
        path = f"{self.stem}-{len(self.paths):05d}.tmp-{os.getpid()}"
        self.paths.append(path)  # first, so a failed write's file is removed too
        with tf.io.TFRecordWriter(path) as writer:
            writer.write(record)

    def __len__(self) -> int:
        return len(self.paths)


def _spill_prefix(item: sources.SourceItem) -> str:
    """Start of the names of ``item``'s spill files (the parent watches new ones appear)."""
    return f".spill-{hashlib.sha1(item.id.encode('utf-8')).hexdigest()[:16]}-"


@contextlib.contextmanager
def _piece_sink(spill_dir: str | None, item: sources.SourceItem):
    """A list, or spill files removed again unless handed over complete."""
    if spill_dir is None:
        yield []
        return
    sink = _SpillWriter(spill_dir, item)
    handed_over = False
    try:
        yield sink
        handed_over = len(sink) > 0
    finally:
        if not handed_over:
            for path in sink.paths:
                with contextlib.suppress(Exception):  # OSError, or tf's on a URL
                    _remove(path)


def _decode_pieces(
    item: sources.SourceItem,
    label_index: int,
    config: IngestConfig,
    decode_threads: int,
    entry: dict,
    pieces: list[segments.Piece],
    out,
) -> tuple[dict, int]:
    """Decodes the pieces into ``out`` (``append``); the entry and the number written."""
    base = item.start or 0.0
    warnings: list[str] = []
    # The decode timeout (an alarm set by ``_timed``) counts per piece of a long file.
    per_piece = signal.getitimer(signal.ITIMER_REAL)[0]
    for piece in pieces:
        if per_piece and piece.index:
            signal.setitimer(signal.ITIMER_REAL, per_piece)
        end = base + piece.end if piece.end is not None else item.end
        try:
            media = decode_media(
                item.path,
                **_decode_settings(config, decode_threads),
                start=base + piece.start,
                end=end,
            )
        except Exception as err:  # noqa: BLE001 - one bad file must not stop the run.
            if not len(out):
                return _failure_entry(entry, err), 0
            warnings.append(
                f"piece {piece.index} of {len(pieces)} (from {piece.start:.3f} s) "
                f"not decoded, kept the {len(out)} before it: "
                f"{_failure_entry(entry, err)['reason']}"
            )
            break
        warnings.extend(f"piece {piece.index}: {w}" for w in media.warnings)
        record = _media_record(
            item,
            label_index,
            media,
            source_id=item.id,
            offset_frames=piece.offset_frames,
            offset_samples=piece.offset_samples(config.fps, config.sample_rate),
        )
        record.id = segments.piece_id(item.id, piece.index)
        out.append(records.encode(record))
        ends = (
            record.offset_frames + len(media.jpeg_frames),
            record.offset_samples + int(media.audio.shape[0]),
            media.height,
            media.width,
            piece.offset_frames / config.fps + record.duration,
        )
        del media, record  # one piece in memory at a time
    num_frames, num_samples, height, width, duration = ends
    entry.update(
        records=len(out),
        num_frames=num_frames,
        num_samples=num_samples,
        height=height,
        width=width,
        duration=round(duration, 6),
    )
    if warnings:
        entry["warnings"] = warnings
    return entry, len(out)


class DecodeTimeout(BaseException):
    """A file took longer than the decode timeout (not an ``Exception``: never caught as one)."""


def _on_alarm(signum, frame):  # noqa: ARG001 - signal handler signature.
    raise DecodeTimeout


def _timed(
    process, item: sources.SourceItem, label_index: int, config: IngestConfig, timeout: float | None
) -> tuple[dict, bytes | None]:
    """``process(item, label_index, config)`` stopped after ``timeout`` seconds.

    A file whose decoding hangs becomes a skip of kind ``timeout``. The alarm needs the
    main thread (the case in a worker process and in the CLI); elsewhere it is not set.
    """
    use_alarm = bool(timeout) and threading.current_thread() is threading.main_thread()
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, float(timeout))
    try:
        return process(item, label_index, config)
    except DecodeTimeout:
        return _timeout_entry(item, timeout), None
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _base_entry(item: sources.SourceItem) -> dict:
    entry = {"path": item.path, "id": item.id, "label": item.label, "split": item.split}
    if item.start is not None or item.end is not None:
        entry.update(start=item.start, end=item.end)
    return entry


def _timeout_entry(item: sources.SourceItem, timeout: float | None) -> dict:
    return {
        **_base_entry(item),
        "kind": "timeout",
        "reason": f"decoding took longer than {timeout:g} s (a hung decoder; re-encode the "
        "file, or raise --decode_timeout)",
    }


class _Progress:
    """Progress on stderr: a tqdm bar (files, rate, ETA) on a terminal.

    Elsewhere (a log file, a pipe) a plain line every 10 s and at the end.
    """

    def __init__(self, total: int, done: int, enabled: bool):
        self.total, self.done, self.skipped = total, done, 0
        self.start_done = done
        self.enabled = enabled
        self.t0 = time.monotonic()
        self.last = self.t0
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(
                total=total,
                initial=done,
                unit="file",
                desc="ingest",
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
            )

    def step(self, skipped: bool) -> None:
        self.done += 1
        self.skipped += int(skipped)
        if self.bar is not None:
            self.bar.set_postfix(skipped=self.skipped, refresh=False)
            self.bar.update(1)
            if self.done >= self.total:
                self.close()
            return
        now = time.monotonic()
        if self.enabled and (now - self.last > 10.0 or self.done == self.total):
            self.last = now
            rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            print(
                f"ingest: {self.done}/{self.total} files ({self.skipped} skipped) "
                f"{rate:.1f} files/s ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _write_json(path: str | os.PathLike, data: dict) -> None:
    """Writes JSON atomically (temporary file, fsync, rename)."""
    atomic.write_json(path, data, indent=1, ensure_ascii=False)


def _is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL (``gs://``...), read and written through ``tf.io.gfile``."""
    return "://" in os.fspath(path)


def _is_file(path: str | os.PathLike) -> bool:
    if not _is_remote(path):
        return os.path.isfile(path)
    return tf.io.gfile.exists(os.fspath(path)) and not tf.io.gfile.isdir(os.fspath(path))


def _read_json(path: str | os.PathLike) -> dict | None:
    if _is_remote(path):
        try:
            with tf.io.gfile.GFile(os.fspath(path), "r") as f:
                return json.loads(f.read())
        except (tf.errors.OpError, ValueError):
            return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _sidecar_path(out: str | os.PathLike, plan: ShardPlan) -> str:
    return os.path.join(os.fspath(out), STATE_DIR, f"{plan.name}.json")


def _finished(out: str | os.PathLike, plan: ShardPlan, config: IngestConfig) -> dict | None:
    """The sidecar of a shard that an earlier run completed, else ``None``.

    ``out`` is a local folder or a URL (``gs://``...).
    """
    if not _is_file(os.path.join(os.fspath(out), plan.name)):
        return None
    side = _read_json(_sidecar_path(out, plan))
    if not side or side.get("config") != config.key():
        return None
    if side.get("ids") != [[it.id, it.path, it.start, it.end] for it in plan.items]:
        return None
    return side


class _ShardWriter:
    """Writes one shard under a temporary name; ``commit`` publishes it."""

    def __init__(self, out: Path, plan: ShardPlan, config: IngestConfig):
        self.out, self.plan, self.config = out, plan, config
        self.tmp = out / f".{plan.name}.tmp-{os.getpid()}"
        self.writer = tf.io.TFRecordWriter(str(self.tmp))
        self.entries: list[dict] = []

    def add(self, entry: dict, data: Records | None) -> None:
        if data is not None:
            try:
                for record in [data] if isinstance(data, bytes) else data:
                    self.writer.write(record)
            finally:
                if isinstance(data, SpilledRecords):
                    self.consumed(data)
            entry = {**entry, "shard": self.plan.name}
        self.entries.append(entry)

    def consumed(self, spilled: SpilledRecords) -> None:
        """Called once ``spilled``'s records are written: its files are not needed again."""
        for path in spilled.paths:
            _remove(path)

    def sidecar(self) -> dict:
        """What ``_finished`` checks: the config, the planned ids and the entries."""
        return {
            "config": self.config.key(),
            "ids": [[it.id, it.path, it.start, it.end] for it in self.plan.items],
            "entries": self.entries,
        }

    def commit(self) -> None:
        self.writer.close()
        _write_json(_sidecar_path(self.out, self.plan), self.sidecar())
        with open(self.tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.out / self.plan.name)

    def discard(self) -> None:
        """Closes and removes the temporary shard (after a failed write)."""
        with contextlib.suppress(Exception):
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: exit when the parent dies (e.g. ``kill -9``), not linger."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _crash_entry(item: sources.SourceItem) -> dict:
    return {
        **_base_entry(item),
        "kind": "crash",
        "reason": "the decoder crashed on this file, also when decoded alone (remove "
        "or re-encode it)",
    }


HARD_LIMIT_MARGIN_S = 30.0  # Beyond 2x the timeout, a worker hung in native code is killed.


def _hard_limit(timeout: float | None) -> float | None:
    """How long the parent waits for a worker's result (the alarm inside comes first)."""
    return None if not timeout else 2 * timeout + HARD_LIMIT_MARGIN_S


def _result(
    future: concurrent.futures.Future,
    item: sources.SourceItem,
    timeout: float | None,
    spill_dir: str | None = None,
):
    """A worker's result, or ``TimeoutError`` once it has shown no progress for the hard limit.

    The hard limit counts per piece of a long file: while the worker keeps writing pieces
    to the file's spill files (each piece has its own decode timeout), the wait goes on.
    """
    limit = _hard_limit(timeout)
    while True:
        try:
            return future.result(timeout=limit)
        except concurrent.futures.TimeoutError:
            if not _grew_within(item, spill_dir, limit):
                raise


def _grew_within(item: sources.SourceItem, spill_dir: str | None, seconds: float) -> bool:
    """Whether a spill file of ``item`` was written in the last ``seconds``."""
    if spill_dir is None:
        return False
    now = time.time()
    for path in _spill_files(spill_dir, _spill_prefix(item)):
        with contextlib.suppress(tf.errors.NotFoundError):  # handed over meanwhile
            if now - tf.io.gfile.stat(path).mtime_nsec / 1e9 < seconds:
                return True
    return False


def _spill_files(spill_dir: str, prefix: str = ".spill-") -> list[str]:
    """Paths of the spill files in ``spill_dir`` (local or a URL) named ``prefix...``."""
    try:
        names = tf.io.gfile.listdir(spill_dir)
    except tf.errors.NotFoundError:
        return []
    return [os.path.join(spill_dir, name) for name in names if name.startswith(prefix)]


def _remove(path: str) -> None:
    """Deletes a local file, or one behind a URL (``gs://``) through ``tf.io.gfile``."""
    if _is_remote(path):
        tf.io.gfile.remove(path)
    else:
        os.unlink(path)


def remove_spill_files(spill_dir: str) -> None:
    """Deletes the spill files left in ``spill_dir`` (by a killed or retried worker)."""
    for path in _spill_files(spill_dir):
        with contextlib.suppress(tf.errors.NotFoundError):
            tf.io.gfile.remove(path)


def _ready() -> int:
    """A worker's first task: it has started and imported this module."""
    return os.getpid()


def _kill(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Stops a pool whose worker hangs in native code (the alarm could not stop it)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def _new_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of spawned workers that exit with this process."""
    return concurrent.futures.ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )


class IsolatedDecoder:
    """Decodes files one at a time in a child process; a file that kills or hangs it is skipped.

    The child runs ``_timed(process_item, ...)`` in its main thread, so the decode
    timeout's alarm works there (the Beam runner calls from a worker thread, where it
    cannot be set). A child that dies (a decoder crash) or shows no progress for
    ``_hard_limit`` (hung in native code) is replaced, and only that file is reported as
    skipped (kind ``crash`` or ``timeout``). A long file's pieces are written to
    ``spill_dir`` (:class:`SpilledRecords`), where the hard limit counts per piece.

    Args:
        config: The ingestion settings.
        timeout: Seconds one file (one piece) may take to decode (``None``: no limit).
        spill_dir: Where long files' pieces are spilled (``None``: returned as lists).
        decode_threads: FFmpeg decoder threads of the child (:func:`threads_per_decoder`).
    """

    def __init__(
        self,
        config: IngestConfig,
        timeout: float | None = None,
        spill_dir: str | None = None,
        decode_threads: int = 0,
    ):
        self.config, self.timeout, self.spill_dir = config, timeout, spill_dir
        self.decode_threads = decode_threads
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None

    def __call__(self, item: sources.SourceItem, label_index: int) -> tuple[dict, Records | None]:
        """The manifest entry and records of ``item`` (``None``: skipped), as ``process_item``."""
        if self.pool is None:
            self.pool = _new_pool(1)
            self.pool.submit(_ready).result()  # start-up is not counted in the time limit
        process = functools.partial(
            process_item, spill_dir=self.spill_dir, decode_threads=self.decode_threads
        )
        future = self.pool.submit(_timed, process, item, label_index, self.config, self.timeout)
        try:
            return _result(future, item, self.timeout, self.spill_dir)
        except BrokenProcessPool:
            self.close()
            return _crash_entry(item), None
        except concurrent.futures.TimeoutError:
            _kill(self.pool)
            self.pool = None
            return _timeout_entry(item, self.timeout), None

    def close(self) -> None:
        """Stops the child process (a later call starts a new one)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _isolated(
    tasks: list[tuple[sources.SourceItem, int]],
    config: IngestConfig,
    timeout: float | None = None,
    spill_dir: str | None = None,
) -> Iterator[tuple[dict, Records | None]]:
    """Runs tasks one at a time in a single worker (:class:`IsolatedDecoder`).

    Only a file that crashes (or hangs) alone is blamed; the others are decoded normally.
    It decodes alone, so with FFmpeg's own number of decoder threads.
    """
    decoder = IsolatedDecoder(config, timeout, spill_dir)
    try:
        for item, label_index in tasks:
            yield decoder(item, label_index)
    finally:
        decoder.close()


def _results(
    tasks: list[tuple[sources.SourceItem, int]],
    config: IngestConfig,
    workers: int,
    timeout: float | None = None,
    spill_dir: str | None = None,
) -> Iterator[tuple[dict, Records | None]]:
    """Processes tasks, yielding results in task order with few in flight.

    A long file's pieces come back through ``spill_dir`` (:class:`SpilledRecords`).

    With ``workers > 1`` a file that kills its worker process (a decoder crash) is
    found by retrying the files in flight one at a time in a fresh process; only a file
    that crashes alone is reported as skipped (kind ``crash``), the others are kept.
    A file taking longer than ``timeout`` seconds is skipped (kind ``timeout``).
    """
    process = functools.partial(
        process_item, spill_dir=spill_dir, decode_threads=threads_per_decoder(workers)
    )
    if workers <= 1:
        for item, label_index in tasks:
            yield _timed(process, item, label_index, config, timeout)
        return
    todo = collections.deque(tasks)
    window: collections.deque = collections.deque()
    pool = _new_pool(workers)
    try:
        while todo or window:
            while todo and len(window) < 2 * workers:
                task = todo.popleft()
                window.append((task, pool.submit(_timed, process, *task, config, timeout)))
            task, future = window.popleft()
            try:
                yield _result(future, task[0], timeout, spill_dir)
                continue
            except BrokenProcessPool:
                pool.shutdown(wait=True, cancel_futures=True)
            except concurrent.futures.TimeoutError:
                _kill(pool)
            # A worker died or hung; any file in flight may be the cause: retry each alone.
            suspects = [task] + [t for t, _ in window]
            window.clear()
            yield from _isolated(suspects, config, timeout, spill_dir)
            pool = _new_pool(workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _lock(out: Path):
    """Holds an exclusive lock on ``out`` (released by the OS if the process dies)."""
    with open(out / STATE_DIR / "lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            raise RuntimeError(
                f"another prepare_data run is writing {out}; wait for it or choose another --output"
            ) from err
        yield


def _clean_temporaries(out: Path) -> None:
    for folder in (out, out / STATE_DIR):
        for path in folder.glob(".*.tmp-*"):
            path.unlink(missing_ok=True)


_SHARD_RE = re.compile(r"^[A-Za-z0-9_.]+-\d{5}-of-\d{5}\.tfrecord$")


def _remove_stale(out: Path, plans: list[ShardPlan]) -> None:
    """Deletes shards an earlier plan wrote (they have sidecars) that this plan lacks."""
    names = {p.name for p in plans}
    for path in sorted(out.iterdir()):
        sidecar = out / STATE_DIR / f"{path.name}.json"
        if _SHARD_RE.match(path.name) and path.name not in names and sidecar.is_file():
            logger.warning("removing %s: not part of the current shard plan", path)
            path.unlink()
            sidecar.unlink()


def _check_writable(out: Path) -> None:
    """Refuses an output that is a file, lies under a file, or cannot be written."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file, not a folder; give a folder for --output")
    existing = out.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(
            f"output {out}: {existing} is a file, not a folder; give a folder for --output"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"output {out}: permission denied, {existing} is not writable; "
            "choose a folder you can write to or fix its permissions"
        )


def _make_output(out: Path) -> None:
    try:
        (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    except PermissionError as err:  # e.g. root on a read-only file system
        raise ValueError(
            f"output {out}: permission denied, cannot create "
            f"{err.filename or out} ({err.strerror}); choose a folder you can "
            "write to or fix its permissions"
        ) from None


def _check_foreign(out: Path, overwrite: bool) -> None:
    """Refuses a non-empty output folder that is not a dataset of ours (unless asked)."""
    _check_writable(out)
    if not out.is_dir() or overwrite:
        return
    entries = sorted(p.name for p in out.iterdir())
    ours = (
        (out / STATE_DIR / "config.json").is_file()
        or (out / "manifest.json").is_file()
        and (out / STATE_DIR).is_dir()
    )
    if entries and not ours:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise ValueError(
            f"output {out} already holds files that are not a dataset of avts_tf "
            f"({shown}); give an empty or new --output, or --overwrite to write "
            "into it anyway"
        )


def _wrote_nothing(out: Path) -> bool:
    """Whether ``out`` holds a finished run that wrote no record (all files skipped)."""
    manifest = _read_json(out / "manifest.json")
    return manifest is not None and not manifest.get("written")


def _start_afresh(out: Path) -> None:
    """Removes our shards, sidecars, config and manifest from ``out`` (nothing else)."""
    for sidecar in sorted((out / STATE_DIR).glob("*.tfrecord.json")):
        (out / sidecar.name[: -len(".json")]).unlink(missing_ok=True)
        sidecar.unlink()
    for path in (out / "manifest.json", out / STATE_DIR / "config.json"):
        path.unlink(missing_ok=True)


def _check_owner(out: Path, config: IngestConfig, input_path: str) -> None:
    """Refuses to mix two configs in one output folder; records the config.

    A run that wrote nothing (every file skipped, e.g. audio-only inputs without
    ``--allow_missing_video``) holds nothing to keep: a corrected re-run replaces it.
    """
    state = {"config": asdict(config), "input": input_path}
    previous = _read_json(out / STATE_DIR / "config.json")
    if previous is not None and previous != state and _wrote_nothing(out):
        logger.warning("replacing the run in %s: it wrote no record", out)
        _start_afresh(out)
        previous = None
    if previous is not None and previous != state:
        old = {"input": previous.get("input"), **(previous.get("config") or {})}
        new = {"input": input_path, **state["config"]}
        diff = ", ".join(
            f"{key}: {old.get(key)!r} there, {new.get(key)!r} now"
            for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)
        )
        raise ValueError(
            f"{out} holds a run with another input or config ({diff}); re-run with the "
            "same flags to resume, or choose another --output (or delete that folder)"
        )
    if previous is None:
        _write_json(out / STATE_DIR / "config.json", state)


def _entry_order(entry: dict) -> tuple:
    return entry["split"], entry["id"], entry.get("start") or 0.0


def build_manifest(
    config: IngestConfig,
    input_path: str,
    labels: list[str],
    plans: list[ShardPlan],
    out: str | os.PathLike,
    extra_skipped: list[dict] | None = None,
) -> Manifest:
    """Assembles the manifest from the sidecars of all (finished) shards in ``out``.

    ``extra_skipped`` are entries skipped before decoding (paths reaching a listed file
    through links).

    Entries are read one shard at a time, so the records themselves are never loaded.
    """
    shards: dict[str, list[Shard]] = collections.defaultdict(list)
    written, skipped = [], list(extra_skipped or [])
    for plan in plans:
        side = _finished(out, plan, config)
        if side is None:
            raise RuntimeError(f"shard {plan.name} is missing or incomplete in {out}")
        entries = side["entries"]
        shards[plan.split].append(
            Shard(plan.name, sum(e.get("records", 1) for e in entries if "reason" not in e))
        )
        for e in entries:
            (skipped if "reason" in e else written).append(e)
    return Manifest(
        config=config,
        labels=tuple(labels),
        splits={
            name: SplitInfo(sum(s.records for s in group), tuple(group))
            for name, group in shards.items()
        },
        written=tuple(WrittenEntry.from_dict(e) for e in sorted(written, key=_entry_order)),
        skipped=tuple(SkippedEntry.from_dict(e) for e in sorted(skipped, key=_entry_order)),
        input=input_path,
    )


def format_summary(manifest: Manifest) -> str:
    """A small table of outcomes: one row per kind of skip, whatever its files' reasons.

    Where a kind's files have reasons of their own (``duplicate``: the same bytes as each
    one's original), the row shows the first and counts them; the manifest lists each.
    """
    rows = [("written", "", len(manifest.written))]
    by_kind: dict[str, list[str]] = {}
    for entry in manifest.skipped:
        by_kind.setdefault(entry.kind, []).append(entry.reason)
    for kind, reasons in sorted(by_kind.items()):
        distinct = list(dict.fromkeys(reasons))
        text = (
            distinct[0]
            if len(distinct) == 1
            else f"e.g. {distinct[0]} ({len(distinct)} reasons; manifest.json lists each file's)"
        )
        rows.append(("skipped", f"{kind}: {text}", len(reasons)))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'outcome':<{width}}  {'files':>6}  reason"]
    lines += [f"{outcome:<{width}}  {n:>6}  {reason}".rstrip() for outcome, reason, n in rows]
    for name, split in sorted(manifest.splits.items()):
        lines.append(f"split {name}: {split.records} records in {len(split.shards)} shards")
    return "\n".join(lines)


def _write_failed(out: Path, plan: ShardPlan, err: Exception) -> RunInterrupted:
    """The one-line error of a shard that could not be written (full disk, I/O error)."""
    reason = getattr(err, "strerror", None) or str(err).split("; ")[-1] or type(err).__name__
    return RunInterrupted(
        f"could not write shard {out / plan.name}: {reason}; free space or fix the folder, "
        "then re-run the same command: the shards already complete are kept"
    )


def log_outcome(entry: dict, data: Records | None) -> None:
    """Logs a skipped file's reason, or a written file's warnings, one line each."""
    if data is None:
        logger.warning("skipped %s: %s", entry["path"], entry["reason"])
    for warning in entry.get("warnings", ()):
        logger.warning("%s: %s", entry["path"], warning)


def _write_shards(
    out: Path,
    plans: list[ShardPlan],
    config: IngestConfig,
    results: Iterator[tuple[dict, bytes | None]],
    report: _Progress,
) -> None:
    """Writes each shard from the results, in plan order (the sidecars record each).

    Raises:
        RunInterrupted: A shard or its sidecar could not be written (e.g. a full disk);
            its temporary files are removed, the shards committed before it stay.
    """
    for plan in plans:
        writer = _ShardWriter(out, plan, config)
        try:
            for _ in plan.items:
                entry, data = next(results)
                log_outcome(entry, data)
                writer.add(entry, data)
                report.step(data is None)
            writer.commit()
        except (OSError, tf.errors.OpError) as err:
            writer.discard()
            raise _write_failed(out, plan, err) from err


@dataclass(frozen=True)
class RunOptions:
    """How one ingestion run behaves, not what it writes (the local pool's and Beam's).

    Attributes:
        progress: Print a progress line and the summary table to stderr.
        overwrite: Write into a non-empty output folder that is not a dataset of ours
            (same-named files in it are replaced); by default it is refused.
        decode_timeout: Seconds one file may take to decode; a file taking longer is
            skipped (kind ``timeout``). ``None``: no limit.
    """

    progress: bool = True
    overwrite: bool = False
    decode_timeout: float | None = 600.0


def prepare_dataset(
    input: str | os.PathLike,  # noqa: A002 - the CLI flag's name.
    output_dir: str | os.PathLike,
    config: IngestConfig = DEFAULTS,
    *,
    workers: int = 1,
    options: RunOptions = RunOptions(),  # noqa: B008 - frozen, so shared safely.
) -> Manifest:
    """Ingests a dataset into TFRecord shards and writes ``manifest.json``.

    Re-running the same command on the same ``output_dir`` resumes: finished shards
    are kept and only missing ones are written.

    Args:
        input: A folder of media (labels from sub-folders), a CSV ``path,label[,split]``
            or a dataset in one of the layouts of ``avts_tf.data.ingestion.sources.LAYOUTS``.
        output_dir: Where shards and the manifest go (created if needed).
        config: The ingestion settings (``IngestConfig``; its ``layout="auto"`` and
            ``require_video=None`` are decided from the input).
        workers: Decoding processes; ``1`` decodes in this process.
        options: Progress, overwrite and the decode time limit of this run.

    Returns:
        The manifest (also written to ``output_dir/manifest.json``).

    Raises:
        avts_tf.data.splits.OverlappingSplits: If a file or an id is listed in two
            splits (nothing is written).
    """
    input_path, config, labels, plans, duplicates = _plan_run(input, output_dir, config)
    progress = options.progress
    out = Path(output_dir)
    _check_foreign(out, options.overwrite)
    _make_output(out)
    with _lock(out):
        _clean_temporaries(out)
        _check_owner(out, config, input_path)
        _remove_stale(out, plans)
        todo = [p for p in plans if _finished(out, p, config) is None]
        done_files = sum(len(p.items) for p in plans) - sum(len(p.items) for p in todo)
        if len(todo) < len(plans) and progress:
            print(
                f"ingest: resuming, {len(plans) - len(todo)}/{len(plans)} shards already complete",
                file=sys.stderr,
            )
        report = _Progress(sum(len(p.items) for p in plans), done_files, progress)
        tasks = [(it, li) for p in todo for it, li in zip(p.items, p.label_indices, strict=True)]
        with contextlib.closing(
            _results(tasks, config, workers, options.decode_timeout, spill_dir=str(out / STATE_DIR))
        ) as results:
            try:
                _write_shards(out, todo, config, results, report)
            finally:
                report.close()
        extra = _duplicate_entries(duplicates)
        manifest = build_manifest(config, input_path, labels, plans, out, extra_skipped=extra)
        manifest.write(out)
    if progress:
        print(format_summary(manifest), file=sys.stderr)
    return manifest


def _plan_run(
    input: str | os.PathLike,
    output_dir: str | os.PathLike,  # noqa: A002
    config: IngestConfig,
) -> tuple[
    str, IngestConfig, list[str], list[ShardPlan], list[tuple[sources.SourceItem, str, str]]
]:
    """Finds the inputs and plans the shards (nothing is written).

    Shared by the local pool and the Beam runner (``beam_runner``), so both plan alike.

    Returns:
        The resolved input path, the config as the manifest records it (layout and
        ``require_video`` decided, paths resolved), the labels, the shard plans, and the
        paths that reach an already listed file through links (with the kept path).
    """
    input_path = str(Path(input).resolve())
    media_dir = str(Path(config.media_dir).resolve()) if config.media_dir else None
    require_video = config.require_video
    duplicates: list[tuple[sources.SourceItem, str, str]] = []
    inside = os.path.realpath(output_dir) + os.sep  # an --output inside the input folder

    def in_output(item: sources.SourceItem) -> bool:
        return os.path.realpath(item.path).startswith(inside)

    def usable(item: sources.SourceItem) -> bool:  # a folder's held-out picks (not AUDIO_LAYOUTS)
        return (
            not in_output(item)
            and header_problem(
                item.path,
                video_stream=config.video_stream,
                audio_stream=config.audio_stream,
                require_audio=config.require_audio,
                require_video=True if require_video is None else require_video,
            )
            is None
        )

    used_layout, items = sources.discover(
        input_path,
        config.layout,
        fold=config.fold,
        media_dir=media_dir,
        test_fraction=config.test_fraction,
        duplicates=duplicates,
        usable=usable,
    )
    items = [it for it in items if not in_output(it)]
    duplicates = [d for d in duplicates if not in_output(d[0])]
    if not items:
        raise ValueError(f"no media files found in {input_path} (layout {used_layout!r})")
    splits.check_disjoint(items, source=input_path)
    if require_video is None:
        require_video = used_layout not in sources.AUDIO_LAYOUTS
    decided = IngestConfig(
        fps=float(config.fps),
        short_side=int(config.short_side),
        sample_rate=int(config.sample_rate),
        jpeg_quality=int(config.jpeg_quality),
        video_stream=config.video_stream,
        audio_stream=config.audio_stream,
        require_audio=bool(config.require_audio),
        require_video=bool(require_video),
        num_shards=config.num_shards,
        layout=used_layout,
        fold=int(config.fold),
        media_dir=media_dir,
        test_fraction=config.test_fraction if used_layout == "folder" else None,
        max_record_s=None if not config.max_record_s else float(config.max_record_s),
        record_overlap_s=float(config.record_overlap_s),
    )
    segments.check_lengths(decided.max_record_s, decided.record_overlap_s)  # before any work
    labels = sorted({it.label for it in items} - {""})
    return input_path, decided, labels, plan_shards(items, labels, config.num_shards), duplicates


def _duplicate_entries(duplicates: list[tuple[sources.SourceItem, str, str]]) -> list[dict]:
    """Skip entries (logged) for paths that reach an already listed file or copy its bytes."""
    how = {
        sources.LINK: "the same file as {} (reached through a link)",
        sources.SAME_CONTENT: "the same bytes as {} (a copy)",
    }
    extra = [
        {
            "path": it.path,
            "id": it.id,
            "label": it.label,
            "split": it.split,
            "kind": "duplicate",
            "same_as": kept,
            "reason": f"{how[why].format(kept)}; ingested once, as that id",
        }
        for it, kept, why in duplicates
    ]
    for entry in extra:
        logger.warning("skipped %s: %s", entry["path"], entry["reason"])
    return extra


def verify_dataset(
    output_dir: str | os.PathLike, *, rebuild: bool = True, workers: int = 1, progress: bool = True
) -> tuple[list, list]:
    """Checks every shard of a prepared dataset and rebuilds the bad ones from their sources.

    A shard is bad when a record does not read back (CRC), its record count or its ids
    differ from ``manifest.json`` (``avts_tf.data.integrity.check_shards``). With
    ``rebuild``, each bad shard and its sidecar are removed and the dataset's own settings
    and input (recorded in the manifest) are ingested again: the resumable path writes
    exactly the missing shards and leaves the good ones as they are.

    Returns:
        The problems found, and those left after rebuilding (empty when all is well).
    """
    out = Path(output_dir)
    found = integrity.check_shards(out)
    if not found or not rebuild:
        return found, found
    manifest = Manifest.read(out)
    for problem in found:
        shard = Path(problem.file)
        shard.unlink(missing_ok=True)
        (out / STATE_DIR / f"{shard.name}.json").unlink(missing_ok=True)
    prepare_dataset(
        manifest.input, out, manifest.config, workers=workers, options=RunOptions(progress=progress)
    )
    return found, integrity.check_shards(out)
