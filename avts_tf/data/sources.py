"""Input listings: which files to ingest, with their ids, labels and splits.

Every reader returns a list of :class:`SourceItem` sorted by ``(split, id)``, so the
shard plan built from it is the same on every run.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv",
     ".3gp", ".ts", ".mts", ".ogv"}
)
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus", ".wma", ".aif", ".aiff"}
)
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS

_SPLIT_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class SourceItem:
    """One input to ingest.

    Attributes:
        path: Absolute path of the media file.
        id: Stable identifier (path relative to the input root, POSIX separators).
        label: Class name, ``""`` when unlabelled.
        split: Split name (letters, digits, ``_.-``).
        start: Cut start in seconds, ``None`` for the file's start.
        end: Cut end in seconds, ``None`` for the file's end.
    """

    path: str
    id: str
    label: str = ""
    split: str = "train"
    start: float | None = None
    end: float | None = None


def _check_split(split: str, where: str) -> str:
    if not _SPLIT_RE.match(split):
        raise ValueError(f"{where}: split {split!r} must use only letters, digits and _.-")
    return split


def _relative_id(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def sort_items(items: list[SourceItem]) -> list[SourceItem]:
    """Sorts items into the canonical ``(split, id, start)`` order."""
    return sorted(items, key=lambda it: (it.split, it.id, it.start or 0.0, it.end or 0.0))


def is_media(path: str | os.PathLike) -> bool:
    """Whether the file name has a known audio or video extension."""
    return Path(path).suffix.lower() in MEDIA_EXTENSIONS


def walk_media(root: str | os.PathLike) -> list[Path]:
    """Media files under ``root`` (recursive, hidden entries skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if not f.startswith(".") and is_media(f))
    return sorted(found)


def list_folder(root: str | os.PathLike, split: str = "train") -> list[SourceItem]:
    """Media files under ``root``; the label is the first sub-folder's name.

    ``root/dog/a.mp4`` gets label ``"dog"``; files directly in ``root`` are unlabelled.
    """
    root = Path(root).resolve()
    items = []
    for path in walk_media(root):
        rel = path.relative_to(root)
        label = rel.parts[0] if len(rel.parts) > 1 else ""
        items.append(SourceItem(str(path), rel.as_posix(), label, split))
    return sort_items(items)


def _float_or_none(value: str | None) -> float | None:
    value = (value or "").strip()
    return float(value) if value else None


def list_csv(csv_path: str | os.PathLike) -> list[SourceItem]:
    """Rows of a CSV with header ``path,label[,split][,start,end]``.

    Paths are relative to the CSV's folder or absolute. A missing or empty split is
    ``"train"``.
    """
    csv_path = Path(csv_path).resolve()
    root = csv_path.parent
    items = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [name.strip() for name in reader.fieldnames or []]
        if "path" not in fields:
            raise ValueError(f"{csv_path}: the header must start with path,label[,split]; "
                             f"found {fields}")
        reader.fieldnames = fields
        for line, row in enumerate(reader, start=2):
            raw = (row.get("path") or "").strip()
            if not raw:
                continue
            path = (root / raw).resolve() if not os.path.isabs(raw) else Path(raw)
            split = (row.get("split") or "").strip() or "train"
            items.append(SourceItem(
                str(path), _relative_id(path, root), (row.get("label") or "").strip(),
                _check_split(split, f"{csv_path}:{line}"),
                _float_or_none(row.get("start")), _float_or_none(row.get("end")),
            ))
    return sort_items(items)


LAYOUTS = ("auto", "folder", "csv")


def discover(input_path: str | os.PathLike, layout: str = "auto") -> tuple[str, list[SourceItem]]:
    """Lists the inputs of a dataset.

    Args:
        input_path: A folder or a CSV file.
        layout: One of :data:`LAYOUTS`; ``"auto"`` picks from what ``input_path`` holds.

    Returns:
        The layout used and the sorted items.
    """
    path = Path(input_path)
    if not path.exists():
        raise FileNotFoundError(f"input {str(path)!r} does not exist")
    if layout == "auto":
        layout = "csv" if path.is_file() else "folder"
    if layout == "csv":
        return layout, list_csv(path)
    if layout == "folder":
        if not path.is_dir():
            raise ValueError(f"layout 'folder' needs a directory, got {str(path)!r}")
        return layout, list_folder(path)
    raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
