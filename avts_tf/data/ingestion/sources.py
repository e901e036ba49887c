"""Input listings: which files to ingest, with their ids, labels and splits.

Every reader returns a list of :class:`SourceItem` sorted by ``(split, id)``, so the
shard plan built from it is the same on every run.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".avi",
        ".mkv",
        ".webm",
        ".mpg",
        ".mpeg",
        ".flv",
        ".wmv",
        ".3gp",
        ".ts",
        ".mts",
        ".ogv",
    }
)
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus", ".wma", ".aif", ".aiff"}
)
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS

_SPLIT_RE = re.compile(r"^[A-Za-z0-9_.]+$")  # No "-": shard names are "{split}-{i}-of-{n}".


@dataclass(frozen=True)
class SourceItem:
    """One input to ingest.

    Attributes:
        path: Absolute path of the media file.
        id: Stable identifier (path relative to the input root, POSIX separators).
        label: Class name, ``""`` when unlabelled.
        split: Split name (letters, digits, ``_`` and ``.``).
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
        raise ValueError(f"{where}: split {split!r} must use only letters, digits, '_' and '.'")
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


def walk_files(root: str | os.PathLike, media_only: bool = False) -> list[Path]:
    """Files under ``root`` (recursive, links followed, hidden entries skipped), sorted.

    A folder reached twice (a symlink loop, a link to a parent or sibling folder) is
    walked once, so the walk always ends. With ``media_only`` only files with a known
    media extension are listed. A broken link is listed (ingestion reports it missing).
    """
    root = Path(root)
    seen_dirs: set[str] = set()
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and os.path.realpath(os.path.join(dirpath, d)) not in seen_dirs
        )
        found.extend(
            Path(dirpath) / f
            for f in filenames
            if not f.startswith(".") and (not media_only or is_media(f))
        )
    return sorted(p for p in found if p.is_file() or p.is_symlink())  # broken links: listed


def walk_media(root: str | os.PathLike) -> list[Path]:
    """Files under ``root`` with a known media extension (see :func:`walk_files`)."""
    return walk_files(root, media_only=True)


#: Why a path was not listed: another path reaches the same file, or a file of the same bytes.
LINK, SAME_CONTENT = "link", "content"


def _content_digest(path: Path) -> str:
    """SHA-256 of the file's bytes; an unreadable file its own path (ingestion reports it)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return f"unreadable:{path}"
    return digest.hexdigest()


def unique_files(paths: list[Path], root: Path) -> tuple[list[Path], list[tuple[Path, Path, str]]]:
    """Keeps one path per real file and one file per content.

    Of the paths reaching one file (links), the one not through a link is kept, else the
    first sorted. Of files holding the same bytes (copies: a clip saved twice, or under two
    class folders), the first sorted is kept: a copy would count twice in training and
    could sit in both splits. Only files sharing a size are read to compare them.

    Returns:
        The kept paths (sorted) and ``(dropped, kept, why)`` triples for the other paths,
        ``why`` being :data:`LINK` or :data:`SAME_CONTENT`.
    """
    by_real: dict[str, list[Path]] = {}
    for path in sorted(paths):
        by_real.setdefault(os.path.realpath(path), []).append(path)
    kept, dropped = [], []
    for real, group in by_real.items():
        direct = [p for p in group if str(p) == real]  # no link on the way
        first = (direct or group)[0]
        kept.append(first)
        dropped.extend((p, first, LINK) for p in group if p != first)
    by_size: dict[int, list[Path]] = {}
    for path in sorted(kept):
        # A broken link is listed (ingestion reports it missing), an empty file too.
        size = path.stat().st_size if path.exists() else 0
        if size:
            by_size.setdefault(size, []).append(path)
    copies = set()
    for group in by_size.values():
        by_digest: dict[str, Path] = {}
        for path in group if len(group) > 1 else ():
            first = by_digest.setdefault(_content_digest(path), path)
            if first != path:
                copies.add(path)
                dropped.append((path, first, SAME_CONTENT))
    return sorted(p for p in kept if p not in copies), sorted(dropped)


def list_folder(
    root: str | os.PathLike,
    split: str = "train",
    duplicates: list[tuple[SourceItem, str, str]] | None = None,
) -> list[SourceItem]:
    """Every file under ``root``; the label is the first sub-folder's name.

    ``root/dog/a.mp4`` gets label ``"dog"``; files directly in ``root`` are unlabelled.
    Whether a file is media is decided when it is decoded (by probing its content, not
    its extension; others are skipped as ``not_media``). A file reached by several paths
    (links), and one content held by several files (copies), is listed once; the other
    paths are appended to ``duplicates`` with the id of the path kept and why
    (:func:`unique_files`).
    """
    root = Path(root).resolve()
    kept, dropped = unique_files(walk_files(root), root)

    def item(path: Path) -> SourceItem:
        rel = path.relative_to(root)
        label = rel.parts[0] if len(rel.parts) > 1 else ""
        return SourceItem(str(path), rel.as_posix(), label, split)

    if duplicates is not None:
        duplicates.extend((item(path), item(first).id, why) for path, first, why in dropped)
    return sort_items([item(path) for path in kept])


#: Share of each label of a folder input held out as split ``test`` by default.
DEFAULT_TEST_FRACTION = 0.1


def held_out_split(
    items: list[SourceItem],
    test_fraction: float,
    usable: Callable[[SourceItem], bool] | None = None,
) -> list[SourceItem]:
    """Puts ``test_fraction`` of each label's files in split ``test``, deterministically.

    Within each label (unlabelled files are one group) files are ranked by the SHA-1 of
    their id (the path relative to the input folder), and the first
    ``max(1, round(test_fraction * n))`` of a group of ``n >= 2`` files go to ``test``;
    a group of one file stays in ``train``. The same folder always gives the same split.

    ``usable`` (ingestion passes a header check, ``media.header_problem``) passes over the
    files ingestion would skip (a README, a video without the sound the dataset requires):
    they stay in ``train``, to be skipped and listed there, and the next usable files by
    rank are held out instead, never the group's last usable one. It is asked in rank
    order, only until the picks and one usable file left for ``train`` are found.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    groups: dict[str, list[SourceItem]] = {}
    for item in items:
        groups.setdefault(item.label, []).append(item)
    held = set()
    for group in groups.values():
        if test_fraction == 0.0 or len(group) < 2:
            continue
        count = max(1, round(test_fraction * len(group)))
        ranked = sorted(group, key=lambda it: hashlib.sha1(it.id.encode()).hexdigest())
        if usable is not None:
            found = []  # the picks, then one usable file kept for train
            for item in ranked:
                if usable(item):
                    found.append(item)
                    if len(found) > count:
                        break
            ranked = found[:-1] if len(found) <= count else found
        held.update(it.id for it in ranked[:count])
    return sort_items(
        [dataclasses.replace(it, split="test" if it.id in held else it.split) for it in items]
    )


def list_file(path: str | os.PathLike) -> list[SourceItem]:
    """One media file as the whole input (unlabelled, split ``train``)."""
    path = Path(path).resolve()
    return [SourceItem(str(path), path.name, "", "train")]


def _float_or_none(value: str | None) -> float | None:
    value = (value or "").strip()
    return float(value) if value else None


def list_csv(csv_path: str | os.PathLike) -> list[SourceItem]:
    """Rows of a CSV with header ``path,label[,split][,start,end]``.

    Paths are relative to the CSV's folder or absolute. A missing or empty split is
    ``"train"``. A list whose relative paths are missing from its folder but exist from
    the current folder is refused, naming the first (the paths were written from there).
    """
    csv_path = Path(csv_path).resolve()
    root = csv_path.parent
    items = []
    from_cwd: list[str] = []  # Relative paths missing from the list's folder, found from here.
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [name.strip() for name in reader.fieldnames or []]
        if "path" not in fields:
            raise ValueError(
                f"{csv_path}: the header must start with path,label[,split]; found {fields}"
            )
        reader.fieldnames = fields
        lines: dict[tuple, int] = {}
        for line, row in enumerate(reader, start=2):
            raw = (row.get("path") or "").strip()
            if not raw:
                continue
            path = (root / raw).resolve() if not os.path.isabs(raw) else Path(raw)
            if not os.path.isabs(raw) and not path.exists() and Path(raw).exists():
                from_cwd.append(raw)
            split = (row.get("split") or "").strip() or "train"
            # The same file twice in one split (across splits: splits.check_disjoint).
            key = (
                os.path.realpath(path),
                split,
                _float_or_none(row.get("start")),
                _float_or_none(row.get("end")),
            )
            if key in lines:
                raise ValueError(
                    f"{csv_path}: lines {lines[key]} and {line} list the same file "
                    f"{raw!r} in split {split!r}; keep one line per file (one "
                    "label each)"
                )
            lines[key] = line
            items.append(
                SourceItem(
                    str(path),
                    _relative_id(path, root),
                    (row.get("label") or "").strip(),
                    _check_split(split, f"{csv_path}:{line}"),
                    _float_or_none(row.get("start")),
                    _float_or_none(row.get("end")),
                )
            )
    if from_cwd:
        raise ValueError(
            f"{csv_path}: {len(from_cwd)} relative path(s) are not in the list's folder "
            f"{root} but exist from the current folder (first: {from_cwd[0]!r}); relative "
            "paths in a list are read from its folder: write them relative to it or absolute"
        )
    return sort_items(items)


def _read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return [line.strip() for line in f if line.strip()]


def _label_from_stem(stem: str) -> str:
    """``busystreet05`` -> ``busystreet`` (DCASE 2013/2014 scene file names)."""
    return re.sub(r"[\s_-]*\d+$", "", stem)


def list_esc50(root: str | os.PathLike) -> list[SourceItem]:
    """ESC-50: ``meta/esc50.csv`` + ``audio/*.wav``; splits ``fold1`` .. ``fold5``."""
    root = Path(root).resolve()
    items = []
    with open(root / "meta" / "esc50.csv", newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            path = root / "audio" / row["filename"]
            items.append(
                SourceItem(
                    str(path),
                    f"audio/{row['filename']}",
                    row["category"],
                    f"fold{int(row['fold'])}",
                )
            )
    return sort_items(items)


_DCASE_SPLITS = {
    "train": "train",
    "development": "train",
    "dev": "train",
    "scenes_stereo": "train",
    "test": "test",
    "evaluation": "test",
    "eval": "test",
    "scenes_stereo_testset": "test",
}


def list_dcase2014(root: str | os.PathLike, fold: int = 1) -> list[SourceItem]:
    """DCASE 2013/2014 acoustic scenes.

    Either a ``meta.txt`` (``file<TAB>scene`` per line, DCASE challenge format; files in
    ``evaluation_setup/fold{fold}_test.txt`` go to ``test``, the rest to ``train``), or
    folders: ``train``/``development``/``scenes_stereo`` and ``test``/``evaluation``/
    ``scenes_stereo_testset`` (without them the whole root is ``train``), holding either
    one sub-folder per scene or files named ``{scene}{NN}.wav``.
    """
    root = Path(root).resolve()
    meta = root / "meta.txt"
    if meta.is_file():
        test_list = root / "evaluation_setup" / f"fold{fold}_test.txt"
        test = (
            {line.split("\t")[0] for line in _read_lines(test_list)}
            if (test_list.is_file())
            else set()
        )
        items = []
        for line in _read_lines(meta):
            parts = re.split(r"\t|,", line)
            if len(parts) < 2:
                continue
            rel, label = parts[0].strip(), parts[1].strip()
            split = "test" if rel in test else "train"
            items.append(SourceItem(str(root / rel), rel, label, split))
        return sort_items(items)
    groups = [
        (d, _DCASE_SPLITS[d.name.lower()])
        for d in sorted(root.iterdir())
        if d.is_dir() and d.name.lower() in _DCASE_SPLITS
    ] or [(root, "train")]
    items = []
    for folder, split in groups:
        for path in walk_media(folder):
            rel = path.relative_to(folder)
            label = rel.parts[0] if len(rel.parts) > 1 else _label_from_stem(path.stem)
            items.append(SourceItem(str(path), _relative_id(path, root), label, split))
    return sort_items(items)


def _video_root(root: Path, names: tuple[str, ...], class_name: str) -> Path:
    """The folder below ``root`` holding ``class_name/`` (or ``root`` itself)."""
    for name in names:
        if (root / name / class_name).is_dir():
            return root / name
    return root


def list_ucf101(root: str | os.PathLike, fold: int = 1) -> list[SourceItem]:
    """UCF101: ``ucfTrainTestlist/{train,test}list0{fold}.txt`` + ``[UCF-101/]Class/*.avi``."""
    root = Path(root).resolve()
    lists = root / "ucfTrainTestlist" if (root / "ucfTrainTestlist").is_dir() else root
    entries = []
    for split in ("train", "test"):
        for line in _read_lines(lists / f"{split}list{fold:02d}.txt"):
            rel = line.split()[0].replace("\\", "/")
            entries.append((rel, split))
    if not entries:
        return []
    videos = _video_root(root, ("UCF-101", "UCF101", "videos"), entries[0][0].split("/")[0])
    return sort_items(
        [SourceItem(str(videos / rel), rel, rel.split("/")[0], split) for rel, split in entries]
    )


def list_hmdb51(root: str | os.PathLike, fold: int = 1) -> list[SourceItem]:
    """HMDB51: ``*_test_split{fold}.txt`` (``video.avi 1|2|0``) + ``[hmdb51_org/]class/``.

    Flag ``1`` is ``train``, ``2`` is ``test``; videos flagged ``0`` are left out.
    """
    root = Path(root).resolve()
    items = []
    split_files = sorted(root.rglob(f"*_test_split{fold}.txt"))
    if not split_files:
        return []
    first_class = split_files[0].name.rsplit("_test_split", 1)[0]
    videos = _video_root(root, ("hmdb51_org", "hmdb51", "videos"), first_class)
    for split_file in split_files:
        label = split_file.name.rsplit("_test_split", 1)[0]
        for line in _read_lines(split_file):
            parts = line.split()
            if len(parts) < 2 or parts[1] not in ("1", "2"):
                continue
            rel = f"{label}/{parts[0]}"
            split = "train" if parts[1] == "1" else "test"
            items.append(SourceItem(str(videos / rel), rel, label, split))
    return sort_items(items)


_FSDD_RE = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def list_fsdd(root: str | os.PathLike) -> list[SourceItem]:
    """Free Spoken Digit Dataset: ``{digit}_{speaker}_{index}.wav``; indices 0-4 are test."""
    root = Path(root).resolve()
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    items = []
    for path in sorted(folder.iterdir()):
        match = _FSDD_RE.match(path.name)
        if match:
            split = "test" if int(match.group(3)) < 5 else "train"
            items.append(SourceItem(str(path), path.name, match.group(1), split))
    return sort_items(items)


_ID_COLUMNS = ("youtube_id", "ytid", "video_id", "id")
_START_COLUMNS = ("time_start", "start_seconds", "start", "start_time")
_END_COLUMNS = ("time_end", "end_seconds", "end", "end_time")
_LABEL_COLUMNS = ("label", "positive_labels", "labels", "category")


def _pick(row: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        if row.get(name) not in (None, ""):
            return row[name]
    return None


def _youtube_rows(csv_path: Path) -> list[dict]:
    """Rows of a Kinetics (header), AudioSet (``# YTID, ...``) or VGGSound (no header) CSV."""
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        lines = [line for line in f if line.strip()]
    header = None
    body = []
    for line in lines:
        if line.startswith("#"):
            fields = [x.strip().lower() for x in line.lstrip("#").split(",")]
            if any(name in fields for name in _ID_COLUMNS):
                header = fields
            continue
        body.append(line)
    rows = list(csv.reader(body, skipinitialspace=True))
    if header is None and rows and any(x.strip().lower() in _ID_COLUMNS for x in rows[0]):
        header, rows = [x.strip().lower() for x in rows[0]], rows[1:]
    if header is None:  # VGGSound: youtube_id, start, label, split; 10 s clips.
        return [
            {
                "youtube_id": r[0],
                "start": r[1],
                "end": str(float(r[1]) + 10.0),
                "label": r[2] if len(r) > 2 else "",
                "split": r[3] if len(r) > 3 else "",
            }
            for r in rows
            if len(r) >= 2
        ]
    return [dict(zip(header, (x.strip() for x in r), strict=False)) for r in rows]


def list_youtube_csv(
    csv_path: str | os.PathLike, media_dir: str | os.PathLike | None = None
) -> list[SourceItem]:
    """Kinetics / AudioSet / VGGSound segment lists, matched to local files.

    Each row ``youtube_id, start, end, label[, split]`` is looked up under ``media_dir``
    (default: the CSV's folder, searched recursively) as ``{id}_{start:06d}_{end:06d}.*``
    (a clip already cut: used whole) or ``{id}.*`` (the full video: cut to
    ``[start, end]``).  Rows with no local file are listed with the expected path and
    reported as missing.  AudioSet's multi-label rows keep their first label.
    """
    csv_path = Path(csv_path).resolve()
    media_root = Path(media_dir).resolve() if media_dir else csv_path.parent
    by_stem: dict[str, Path] = {}
    for path in walk_media(media_root):
        by_stem.setdefault(path.stem, path)
    default_split = "train"
    for name in ("test", "val", "validate", "validation", "eval"):
        if name in csv_path.stem.lower():
            default_split = "test" if name in ("test", "eval") else "val"
    items = []
    for row in _youtube_rows(csv_path):
        row = {k.lower(): v for k, v in row.items() if k}
        ytid = _pick(row, _ID_COLUMNS)
        if not ytid:
            continue
        start = float(_pick(row, _START_COLUMNS) or 0.0)
        end_text = _pick(row, _END_COLUMNS)
        end = float(end_text) if end_text else start + 10.0
        label = (_pick(row, _LABEL_COLUMNS) or "").split(",")[0].strip().strip('"')
        split = (row.get("split") or "").strip() or default_split
        clip_id = f"{ytid}_{int(start):06d}_{int(end):06d}"
        if clip_id in by_stem:
            items.append(SourceItem(str(by_stem[clip_id]), clip_id, label, split))
        elif ytid in by_stem:
            items.append(SourceItem(str(by_stem[ytid]), clip_id, label, split, start, end))
        else:
            items.append(SourceItem(str(media_root / f"{clip_id}.mp4"), clip_id, label, split))
    return sort_items(
        [
            SourceItem(
                it.path, it.id, it.label, _check_split(it.split, str(csv_path)), it.start, it.end
            )
            for it in items
        ]
    )


LAYOUTS = (
    "auto",
    "folder",
    "file",
    "csv",
    "esc50",
    "dcase2014",
    "ucf101",
    "hmdb51",
    "fsdd",
    "youtube",
)
AUDIO_LAYOUTS = frozenset({"esc50", "dcase2014", "fsdd"})


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


#: A folder holding this list of its media (``path,label[,split]``, as ``avts-make-synthetic``
#: writes) is read through it: its labels and splits, not the folder's.
FOLDER_LISTING = "dataset.csv"


def listing_of(folder: Path) -> Path | None:
    """The folder's :data:`FOLDER_LISTING` when it is a CSV of media files, else ``None``."""
    listing = folder / FOLDER_LISTING
    if not listing.is_file():
        return None
    try:
        return listing if detect_layout(listing) == "csv" else None
    except ValueError:  # another kind of list: the folder is a plain folder
        return None


def detect_layout(input_path: str | os.PathLike) -> str:
    """Guesses the layout of a folder or list file (``dcase2014`` must be asked for)."""
    path = Path(input_path)
    if path.is_file() and path.suffix.lower() not in (".csv", ".txt", ".tsv"):
        return "file"  # one media file (any container FFmpeg reads)
    if path.is_file():
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            head = [line for line in (f.readline() for _ in range(5)) if line.strip()]
        first = head[0].lstrip("#").lower() if head else ""
        fields = [x.strip().strip('"') for x in first.split(",")]
        if "path" in fields:
            return "csv"
        if any(x in fields for x in _ID_COLUMNS) or any(line.startswith("#") for line in head):
            return "youtube"
        if len(fields) >= 3 and _is_number(fields[1]) and not is_media(fields[0]):
            return "youtube"  # VGGSound: youtube_id,start,label,split without a header.
        if not head:
            raise ValueError(
                f"{path}: the list is empty; give a CSV with header path,label[,split][,start,end]"
            )
        raise ValueError(
            f"{path}: unknown list layout, first line {head[0].strip()[:80]!r}; expected the "
            "header path,label[,split][,start,end] (a CSV of media files) or "
            "youtube_id,time_start,time_end,label (Kinetics; AudioSet and VGGSound lists are "
            "recognised too); rename the columns or pass --layout"
        )
    if (path / "meta" / "esc50.csv").is_file():
        return "esc50"
    if (path / "ucfTrainTestlist").is_dir() or (path / "trainlist01.txt").is_file():
        return "ucf101"
    if next(path.glob("*_test_split1.txt"), None) or next(path.glob("*/*_test_split1.txt"), None):
        return "hmdb51"
    if _is_fsdd_folder(path / "recordings" if (path / "recordings").is_dir() else path):
        return "fsdd"
    return "folder"


def _is_fsdd_folder(folder: Path) -> bool:
    """Whether ``folder`` holds FSDD recordings and nothing else (hidden entries aside).

    The FSDD layout reads only ``{digit}_{speaker}_{index}.wav`` names, so a folder with
    anything else (a video, a label sub-folder) is a plain folder: guessing FSDD there
    would leave the other files out unlisted.
    """
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return bool(entries) and all(p.is_file() and _FSDD_RE.match(p.name) for p in entries)


def discover(
    input_path: str | os.PathLike,
    layout: str = "auto",
    *,
    fold: int = 1,
    media_dir: str | os.PathLike | None = None,
    test_fraction: float | None = None,
    duplicates: list[tuple[SourceItem, str, str]] | None = None,
    usable: Callable[[SourceItem], bool] | None = None,
) -> tuple[str, list[SourceItem]]:
    """Lists the inputs of a dataset.

    Args:
        input_path: A folder or a list file.
        layout: One of :data:`LAYOUTS`; ``"auto"`` guesses with :func:`detect_layout`
            (a folder holding a :data:`FOLDER_LISTING` CSV is read through it).
        fold: Which official split to use (UCF101/HMDB51 1-3, DCASE fold).
        media_dir: Where the ``youtube`` layout looks for local files.
        test_fraction: For a folder, the share of each label held out as ``test``
            (:func:`held_out_split`); ``None``: every file in ``train``.
        duplicates: Receives the paths of a folder that reach an already listed file
            through links, with the id kept (:func:`list_folder`).
        usable: For a folder's held-out split, whether a file would be ingested
            (:func:`held_out_split`).

    Returns:
        The layout used and the sorted items.
    """
    path = Path(input_path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "input does not exist", str(path))
    if layout == "auto" and path.is_dir() and (listing := listing_of(path)):
        path, layout = listing, "csv"
    if layout == "auto":
        layout = detect_layout(path)
    needs_file = layout in ("csv", "youtube", "file")
    if needs_file != path.is_file():
        kind = "a list file" if needs_file else "a folder"
        raise ValueError(f"layout {layout!r} needs {kind}, got {str(path)!r}")
    readers = {
        "folder": lambda: (
            held_out_split(list_folder(path, duplicates=duplicates), test_fraction, usable)
            if test_fraction
            else list_folder(path, duplicates=duplicates)
        ),
        "file": lambda: list_file(path),
        "csv": lambda: list_csv(path),
        "esc50": lambda: list_esc50(path),
        "dcase2014": lambda: list_dcase2014(path, fold),
        "ucf101": lambda: list_ucf101(path, fold),
        "hmdb51": lambda: list_hmdb51(path, fold),
        "fsdd": lambda: list_fsdd(path),
        "youtube": lambda: list_youtube_csv(path, media_dir),
    }
    if layout not in readers:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return layout, readers[layout]()
