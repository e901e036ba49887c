"""The prepared-data format: ``manifest.json`` and the ingestion settings it records.

A prepared folder (written by ``tools/prepare_data.py``) holds TFRecord shards and one
``manifest.json``: the ingestion config, the label list, the shards of each split, and
one entry per input file, written (a record) or skipped (with the reason). ``Manifest``
is its only reader and writer::

    manifest = Manifest.read(data_dir)
    manifest.fps, manifest.sample_rate, manifest.records("train")

The file carries ``format_version``; a file without it (written before the field
existed) is version 1. Reading a newer version fails with a clear error rather than
misreading it. Unknown keys are ignored; a change that old readers would misread must
bump ``FORMAT_VERSION``.

``IngestConfig`` holds the ingestion settings and their defaults (``DEFAULTS``), the one
place they are defined; the tools' flags and the functions that ingest use them.
This module imports neither TensorFlow (only to read, lazily) nor PyAV.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from avts_tf import atomic
from avts_tf.data.ingestion.segments import piece_id
from avts_tf.errors import UserError

FILES_PER_SHARD = 128  # Default shard size of ingestion (``IngestConfig.num_shards = None``).

FILENAME = "manifest.json"
FORMAT_VERSION = 1  # Bump when old readers would misread a new manifest.
RECORDS_FORMAT = "avts_tf.records/1"  # The SequenceExample layout (``records.py``).


class ManifestError(UserError):
    """A ``manifest.json`` that cannot be read: bad JSON or an unknown format version."""


@dataclass(frozen=True)
class IngestConfig:
    """Everything that changes the bytes written (the worker count does not).

    Attributes:
        fps: Frame rate of the stored frames.
        short_side: Short side of the stored frames, in pixels.
        sample_rate: Audio rate in Hz (mono, 16-bit).
        jpeg_quality: JPEG quality of the frames (1-100).
        video_stream: Index among each file's video streams (``None``: the best one).
        audio_stream: Index among each file's audio streams (``None``: the best one).
        require_audio: Skip files without an audio stream.
        require_video: Skip files without a video stream; ``None``: yes except for the
            audio layouts (``sources.AUDIO_LAYOUTS``), decided when the run is planned (a
            manifest records the choice).
        num_shards: Shards per split (``None``: one per ``prepare.FILES_PER_SHARD`` files).
        layout: Input layout (``avts_tf.data.ingestion.sources.LAYOUTS``; ``"auto"`` guesses).
        fold: Official split number for UCF101/HMDB51/DCASE (1-3).
        media_dir: Where the ``youtube`` layout looks for local files.
        test_fraction: Share of each label's files held out as split ``test`` when a
            folder is ingested (``sources.held_out_split``); ``None``: no held-out split.
        max_record_s: A file (or cut) longer than this many seconds is stored as several
            records of at most this length (``ingestion.segments``); ``None``: never cut.
        record_overlap_s: Seconds shared by consecutive records of one file: clips up to
            this long can start anywhere in the file.
    """

    fps: float = 8.0
    short_side: int = 40
    sample_rate: int = 16000
    jpeg_quality: int = 90
    video_stream: int | None = None
    audio_stream: int | None = None
    require_audio: bool = True
    require_video: bool | None = None
    num_shards: int | None = None
    layout: str = "auto"
    fold: int = 1
    media_dir: str | None = None
    test_fraction: float | None = None
    max_record_s: float | None = 30.0
    record_overlap_s: float = 5.0

    def key(self) -> str:
        """A short hash identifying the config."""
        fields = asdict(self)
        if fields["test_fraction"] is None:  # configs from before it existed keep their key
            del fields["test_fraction"]
        for name in ("max_record_s", "record_overlap_s"):  # likewise, at their defaults
            if fields[name] == getattr(DEFAULTS, name):
                del fields[name]
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IngestConfig:
        """The config of a manifest's ``config`` (missing keys take the defaults).

        A missing ``require_video`` reads as ``True``: a manifest records a decided value.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name, kind in (
            ("fps", float),
            ("short_side", int),
            ("sample_rate", int),
            ("record_overlap_s", float),
        ):
            if name in values:
                values[name] = kind(values[name])
        values.setdefault("require_video", True)
        return cls(**values)


DEFAULTS = IngestConfig()  # The ingestion defaults, for flags and function signatures.


def _cut(data: Mapping[str, Any]) -> dict[str, Any]:
    """``start``/``end`` of an entry: both when either is set, else nothing."""
    if data.get("start") is None and data.get("end") is None:
        return {}
    return {"start": data.get("start"), "end": data.get("end")}


@dataclass(frozen=True)
class WrittenEntry:
    """An input file stored as one record (``shard`` names its shard file).

    ``start``/``end`` (seconds) are set for a cut of a longer file.
    """

    id: str
    split: str = "train"
    path: str = ""
    label: str = ""
    start: float | None = None
    end: float | None = None
    shard: str | None = None
    records: int = 1
    num_frames: int = 0
    num_samples: int = 0
    height: int = 0
    width: int = 0
    duration: float = 0.0
    warnings: tuple[str, ...] = ()

    def record_ids(self) -> tuple[str, ...]:
        """Ids of its records: its own, or those of its pieces (``ingestion.segments``)."""
        if self.records == 1:
            return (self.id,)
        return tuple(piece_id(self.id, k) for k in range(self.records))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WrittenEntry:
        """The entry of one item of a manifest's ``written`` list."""
        return cls(
            id=str(data["id"]),
            split=str(data.get("split", "train")),
            path=data.get("path") or "",
            label=data.get("label") or "",
            start=data.get("start"),
            end=data.get("end"),
            shard=data.get("shard"),
            records=int(data.get("records", 1)),
            num_frames=int(data.get("num_frames", 0)),
            num_samples=int(data.get("num_samples", 0)),
            height=int(data.get("height", 0)),
            width=int(data.get("width", 0)),
            duration=float(data.get("duration", 0.0)),
            warnings=tuple(data.get("warnings", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``start``/``end``, ``warnings``, ``shard`` only when set)."""
        out = {
            "path": self.path,
            "id": self.id,
            "label": self.label,
            "split": self.split,
            **_cut(asdict(self)),
            "records": self.records,
            "num_frames": self.num_frames,
            "num_samples": self.num_samples,
            "height": self.height,
            "width": self.width,
            "duration": self.duration,
        }
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.shard is not None:
            out["shard"] = self.shard
        return out


@dataclass(frozen=True)
class SkippedEntry:
    """An input file that was not stored: ``kind`` (e.g. ``no_audio``) and ``reason``.

    ``same_as``: for a ``duplicate`` (a second path to a file, or a byte-identical copy),
    the id of the file ingested in its place.
    """

    id: str
    kind: str
    reason: str
    split: str = "train"
    path: str = ""
    label: str = ""
    start: float | None = None
    end: float | None = None
    same_as: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SkippedEntry:
        """The entry of one item of a manifest's ``skipped`` list."""
        return cls(
            id=str(data["id"]),
            kind=str(data.get("kind", "error")),
            reason=str(data.get("reason", "")),
            split=str(data.get("split", "train")),
            path=data.get("path") or "",
            label=data.get("label") or "",
            start=data.get("start"),
            end=data.get("end"),
            same_as=data.get("same_as") or "",
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``start``/``end`` and ``same_as`` only when set)."""
        return {
            "path": self.path,
            "id": self.id,
            "label": self.label,
            "split": self.split,
            **_cut(asdict(self)),
            "kind": self.kind,
            "reason": self.reason,
            **({"same_as": self.same_as} if self.same_as else {}),
        }


@dataclass(frozen=True)
class Shard:
    """One shard file of a split and the records it holds."""

    file: str
    records: int


@dataclass(frozen=True)
class SplitInfo:
    """The shards of one split and their total record count."""

    records: int = 0
    shards: tuple[Shard, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SplitInfo:
        """The split of one value of a manifest's ``splits``."""
        shards = tuple(Shard(str(s["file"]), int(s["records"])) for s in data.get("shards", ()))
        return cls(int(data.get("records", 0)), shards)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"records": self.records, "shards": [asdict(s) for s in self.shards]}


def manifest_path(data_dir: str | os.PathLike) -> str:
    """``data_dir/manifest.json`` (a string, so ``gs://`` paths stay intact)."""
    return os.path.join(os.fspath(data_dir), FILENAME)


def exists(data_dir: str | os.PathLike) -> bool:
    """Whether ``data_dir`` is a prepared dataset (holds a ``manifest.json``)."""
    path = manifest_path(data_dir)
    if "://" not in path:
        return os.path.isfile(path)
    import tensorflow as tf  # remote paths only: this module is TensorFlow-free

    return tf.io.gfile.exists(path)


@dataclass(frozen=True)
class Manifest:
    """The contents of a prepared folder's ``manifest.json``.

    Attributes:
        config: The ingestion settings the records were written with.
        labels: The sorted label list (a record's ``label_index`` indexes it).
        splits: Shards and record counts per split name.
        written: The stored files, sorted by ``(split, id, start)``.
        skipped: The files not stored, with the reason, in the same order.
        input: The ingested input (folder, CSV or dataset root).
        subset_of: The folder this one is a subset of (``records_io.few_shot_subset``).
        format_version: The format version of the file read (``FORMAT_VERSION`` when new).
        data_dir: The folder it was read from (not written; for messages).
    """

    config: IngestConfig = DEFAULTS
    labels: tuple[str, ...] = ()
    splits: Mapping[str, SplitInfo] = field(default_factory=dict)
    written: tuple[WrittenEntry, ...] = ()
    skipped: tuple[SkippedEntry, ...] = ()
    input: str = ""
    subset_of: str | None = None
    format_version: int = FORMAT_VERSION
    data_dir: str | None = field(default=None, compare=False, repr=False)

    # -- reading and writing ----------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], data_dir: str | None = None) -> Manifest:
        """The manifest of parsed ``manifest.json`` contents.

        Raises:
            ManifestError: If the format version is unknown (newer than this code).
        """
        where = manifest_path(data_dir) if data_dir is not None else "manifest"
        version = data.get("format_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ManifestError(
                f"{where}: format_version {version!r} is not a version number; "
                "re-run tools/prepare_data.py to write it again"
            )
        if version > FORMAT_VERSION:
            raise ManifestError(
                f"{where} has format version {version}, newer than this avts_tf reads "
                f"(up to {FORMAT_VERSION}); upgrade avts_tf, or prepare the data again with "
                "this version (tools/prepare_data.py --input ... --output ...)"
            )
        return cls(
            config=IngestConfig.from_dict(data.get("config", {})),
            labels=tuple(str(x) for x in data.get("labels", ())),
            splits={str(k): SplitInfo.from_dict(v) for k, v in data.get("splits", {}).items()},
            written=tuple(WrittenEntry.from_dict(e) for e in data.get("written", ())),
            skipped=tuple(SkippedEntry.from_dict(e) for e in data.get("skipped", ())),
            input=str(data.get("input", "")),
            subset_of=data.get("subset_of"),
            format_version=version,
            data_dir=data_dir,
        )

    @classmethod
    def read(cls, data_dir: str | os.PathLike) -> Manifest:
        """Reads ``data_dir/manifest.json`` (local or remote, through ``tf.io.gfile``).

        Raises:
            FileNotFoundError: If ``data_dir`` is not a prepared dataset; names the fix.
            ManifestError: If the file is not JSON or its format version is unknown.
        """
        data_dir = os.fspath(data_dir)
        path = manifest_path(data_dir)
        if not exists(data_dir):
            raise FileNotFoundError(
                f"{path} not found: {data_dir} is not a prepared dataset. "
                f"Run tools/prepare_data.py --input ... --output {data_dir}."
            )
        import tensorflow as tf  # remote paths only: this module is TensorFlow-free

        with tf.io.gfile.GFile(path, "r") as f:
            text = f.read()
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ManifestError(
                f"{path} is not valid JSON ({err}); prepare the data again: "
                f"tools/prepare_data.py --input ... --output {data_dir}"
            ) from None
        if not isinstance(data, Mapping):
            raise ManifestError(
                f"{path} holds no JSON object; prepare the data again: "
                f"tools/prepare_data.py --input ... --output {data_dir}"
            )
        return cls.from_dict(data, data_dir)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, written with ``format_version = FORMAT_VERSION``."""
        out = {
            "format": RECORDS_FORMAT,
            "format_version": FORMAT_VERSION,
            "input": self.input,
            "config": asdict(self.config),
            "labels": list(self.labels),
            "splits": {k: v.to_dict() for k, v in self.splits.items()},
            "summary": self.summary,
            "written": [e.to_dict() for e in self.written],
            "skipped": [e.to_dict() for e in self.skipped],
        }
        if self.subset_of is not None:
            out["subset_of"] = self.subset_of
        return out

    def write(self, data_dir: str | os.PathLike) -> None:
        """Writes ``data_dir/manifest.json`` atomically (local or ``gs://``)."""
        atomic.write_json(manifest_path(data_dir), self.to_dict(), indent=1, ensure_ascii=False)

    # -- what the readers and tools ask -------------------------------------------------

    @property
    def fps(self) -> float:
        """Frame rate the records were stored at."""
        return float(self.config.fps)

    @property
    def sample_rate(self) -> int:
        """Audio rate the records were stored at, in Hz."""
        return int(self.config.sample_rate)

    @property
    def summary(self) -> dict[str, Any]:
        """Counts of files, written and skipped, and skipped files per kind."""
        kinds = collections.Counter(e.kind for e in self.skipped)
        return {
            "files": len(self.written) + len(self.skipped),
            "written": len(self.written),
            "skipped": len(self.skipped),
            "skipped_by_kind": dict(sorted(kinds.items())),
        }

    @property
    def split_names(self) -> list[str]:
        """Sorted names of the splits that hold records."""
        return sorted(name for name, info in self.splits.items() if info.records)

    def num_records(self, splits: str | Iterable[str]) -> int:
        """Records in one split or several, according to the split table (0 if absent)."""
        names = [splits] if isinstance(splits, str) else list(splits)
        return sum(self.splits.get(name, SplitInfo()).records for name in names)

    def records(self, split: str) -> tuple[WrittenEntry, ...]:
        """The written entries of ``split``, in manifest order."""
        return tuple(e for e in self.written if e.split == split)

    def count_shorter_than(self, split: str, seconds: float) -> int:
        """Written entries of ``split`` shorter than ``seconds`` (no duration counts as 0)."""
        return sum(1 for e in self.records(split) if e.duration < seconds)

    def without_clip_window(
        self, split: str, seconds: float, needs_audio: bool = True
    ) -> dict[str, int]:
        """Entries of ``split`` that hold no ``seconds`` clip window, by cause.

        Returns:
            ``{"without video": n, "without audio": n, "shorter": n}`` (``without audio``
            counted only with ``needs_audio``), causes with no entry left out. Entries
            without recorded sizes (a hand-written manifest) are not counted.
        """
        samples = round(seconds * self.sample_rate)
        causes: collections.Counter[str] = collections.Counter()
        for entry in self.records(split):
            if not (entry.duration or entry.num_frames or entry.num_samples):
                continue
            if not entry.num_frames:
                causes["without video"] += 1
            elif needs_audio and not entry.num_samples:
                causes["without audio"] += 1
            elif entry.duration < seconds or (needs_audio and entry.num_samples < samples):
                causes["shorter"] += 1
        return {
            cause: causes[cause]
            for cause in ("without video", "without audio", "shorter")
            if causes[cause]
        }

    def require_clip_windows(
        self,
        split: str,
        seconds: float,
        role: str = "train",
        needs_audio: bool = True,
        multiple: int = 1,
    ) -> dict[str, int]:
        """Refuses a ``split`` none of whose records holds one ``seconds`` clip window.

        The pipelines skip such records (audio-only files, and with ``needs_audio`` files
        without sound); with nothing else in the split they would stream nothing. An empty
        split passes (checked elsewhere). ``multiple`` > 1: ``seconds`` is that many 1x
        clip windows (the task's slowest view), which the message says.

        Returns:
            The records skipped, by cause (:meth:`without_clip_window`).

        Raises:
            UserError: Naming the split, how many records lack video or audio or are
                shorter, and the fixes.
        """
        entries = self.records(split)
        causes = self.without_clip_window(split, seconds, needs_audio)
        if not entries or sum(causes.values()) < len(entries):
            return causes
        why = ", ".join(f"{count} {cause}" for cause, count in causes.items())
        where = f" of {self.data_dir}" if self.data_dir else ""
        wanted = "longer videos with an audio track" if needs_audio else "longer videos"
        slowest = (
            f" (the task's slowest view: {multiple}x a {seconds / multiple:.2f} s clip)"
            if multiple > 1
            else ""
        )
        raise UserError(
            f"no record of the {role} split {split!r}{where} holds one {seconds:.2f} s clip "
            f"window{' of video and audio' if needs_audio else ' of video'}{slowest} "
            f"({len(entries)} record(s): {why}); prepare {wanted}, or shorten the clip "
            f"(data.ClipSpec.num_frames){' or include a faster view speed' if slowest else ''}"
        )

    def check_sample_rate(self, expected: int) -> None:
        """Refuses records stored at another audio rate than ``expected`` Hz.

        Raises:
            ValueError: Naming both rates and the two fixes.
        """
        if self.sample_rate != int(expected):
            where = self.data_dir or "the dataset"
            raise ValueError(
                f"{where} stores audio at {self.sample_rate} Hz but the log-mel spec expects "
                f"{expected} Hz; set LogMelSpec.sample_rate = {self.sample_rate} or re-run "
                "prepare_data with --sample_rate."
            )
