"""Cutting long files into records of bounded length.

A prepared record holds its frames and samples in one ``SequenceExample``; a long file
as one record would make records of gigabytes (protobuf stops at 2 GB) and fill the
reader's shuffle buffer with copies of one film. Ingestion therefore cuts a file longer
than ``max_record_s`` into pieces of at most ``max_record_s`` seconds that overlap by
``overlap_s`` seconds, so every clip of up to ``overlap_s`` seconds that fits in the file
fits in one piece, whatever its start. Pieces start on the output frame grid: piece ``k``
starts at frame ``k * step`` of the file's output frames (``step`` frames = piece length
minus overlap), so its frames are frames ``k * step ...`` of the whole file and its
timestamps stay exact. All pieces of a file share the file's id as their ``source_id``
(the reader's ``video_id``), so same-video negatives and temporal views still come from
one file; each carries its ``offset_frames`` and ``offset_samples`` in the file.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Piece:
    """One record's share of a file.

    Attributes:
        index: Position among the file's pieces.
        start: Seconds after the file's (or cut's) start where the piece starts.
        end: Seconds where it ends; ``None``: the end of the file (the last piece).
        offset_frames: Its first frame's index among the file's output frames.
    """

    index: int
    start: float
    end: float | None
    offset_frames: int

    def offset_samples(self, fps: float, sample_rate: int) -> int:
        """Its first audio sample's index in the file's output audio."""
        return round(self.offset_frames * sample_rate / fps)


def check_lengths(max_record_s: float | None, overlap_s: float) -> None:
    """Refuses an overlap that is negative or not shorter than the longest record.

    Raises:
        ValueError: ``<problem>; <fix>``.
    """
    if max_record_s is not None and not 0 <= overlap_s < max_record_s:
        raise ValueError(
            f"record overlap {overlap_s} s must be at least 0 and shorter than "
            f"the longest record, {max_record_s} s; give a --record_overlap_s "
            "below --max_record_s"
        )


def plan_pieces(
    duration_s: float | None, fps: float, max_record_s: float | None, overlap_s: float
) -> list[Piece]:
    """The pieces of a file of ``duration_s`` seconds (one piece when it is short enough).

    Args:
        duration_s: The file's (or cut's) length; ``None`` when unknown (one piece).
        fps: Output frame rate (pieces start on its grid).
        max_record_s: Longest piece in seconds; ``None`` never cuts.
        overlap_s: Seconds shared by consecutive pieces (at least one clip window).

    Raises:
        ValueError: If ``overlap_s`` is negative or not shorter than ``max_record_s``.
    """
    if max_record_s is None or duration_s is None:
        return [Piece(0, 0.0, None, 0)]
    check_lengths(max_record_s, overlap_s)
    length = max(1, math.floor(max_record_s * fps + 1e-9))  # frames per piece
    step = max(1, length - math.ceil(overlap_s * fps - 1e-9))
    total = duration_s * fps
    if total <= length + 1e-6:
        return [Piece(0, 0.0, None, 0)]
    # Enough pieces that the last one, running to the end, is no longer than ``length``.
    count = math.ceil((total - length) / step - 1e-9) + 1
    pieces = [
        Piece(k, k * step / fps, (k * step + length) / fps, k * step) for k in range(count - 1)
    ]
    last = (count - 1) * step
    pieces.append(Piece(count - 1, last / fps, None, last))
    return pieces


def piece_id(file_id: str, index: int) -> str:
    """The record id of piece ``index`` of the file ``file_id``."""
    return f"{file_id}@{index:05d}"
