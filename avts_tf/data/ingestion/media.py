"""Decoding one media file with PyAV into fixed-rate JPEG frames and mono PCM.

Timing rules (the reader relies on them):

* The time origin ``t=0`` is the start time of the chosen video stream (its first
  decoded frame where the container gives none); for audio-only files it is the
  audio stream's start.  ``start``/``end`` cut points are seconds after that origin.
* Output frame ``i`` is the decoded frame on screen at ``i / fps``: the last frame
  with a presentation time ``<= i / fps`` (the first frame for times before it).
  This resamples constant and variable frame rates alike.  The video lasts until
  the last frame's time plus its duration.
* Audio sample ``0`` is ``t=0``.  Audio that starts late is padded with zeros at
  the front, audio that starts early is trimmed.  When the record has video the
  audio is then padded with zeros or trimmed at the end to the video length
  (``round(num_frames * sample_rate / fps)`` samples), so both cover the same span.
* Frames are rotated as the container's display matrix asks, then resized so the
  short side is ``short_side`` pixels, keeping the display aspect ratio.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
import simplejpeg

from avts_tf.data.manifest import DEFAULTS

_EPS = 1e-6


class MediaError(Exception):
    """A file that cannot be ingested.

    Attributes:
        kind: Short machine-readable category (``"no_audio"``, ``"truncated"``...).
        reason: One human-readable line: the problem and, in brackets, the fix.
    """

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass
class DecodedMedia:
    """A decoded file, before ids and labels are attached.

    Attributes:
        jpeg_frames: JPEG bytes per output frame.
        fps: Frame rate of ``jpeg_frames`` (``0`` without video).
        height: Frame height.
        width: Frame width.
        audio: Mono int16 samples (empty without audio).
        sample_rate: Audio rate (``0`` without audio).
        warnings: Non-fatal problems met while decoding.
    """

    jpeg_frames: list[bytes] = field(default_factory=list)
    fps: float = 0.0
    height: int = 0
    width: int = 0
    audio: np.ndarray = field(default_factory=lambda: np.zeros([0], np.int16))
    sample_rate: int = 0
    warnings: list[str] = field(default_factory=list)


def _one_line(err: BaseException) -> str:
    text = getattr(err, "strerror", None) if isinstance(err, av.FFmpegError) else None
    text = " ".join(str(text or err).split())
    return text or type(err).__name__


def _is_picture(stream: av.stream.Stream) -> bool:
    """Whether a video stream is cover art rather than motion video."""
    flags = av.stream.Disposition.attached_pic | av.stream.Disposition.still_image
    try:
        return bool(stream.disposition & flags)
    except (AttributeError, TypeError, ValueError):
        return False


def _select(container: av.container.InputContainer, kind: str, index: int | None):
    """Picks the ``index``-th stream of ``kind`` or the best one; ``None`` if none."""
    streams = list(getattr(container.streams, kind))
    if kind == "video":
        streams = [s for s in streams if not _is_picture(s)]
    if index is not None and streams:
        if not 0 <= index < len(streams):
            raise MediaError(
                "bad_stream",
                f"--{kind}_stream={index} is out of range: the file has {len(streams)} "
                f"{kind} stream(s) (pass an index below {len(streams)} or leave it unset)",
            )
        return streams[index]
    if not streams:
        return None
    try:
        best = container.streams.best(kind)
    except (av.FFmpegError, ValueError):
        best = None
    return best if best in streams else streams[0]


def _start_seconds(stream: av.stream.Stream) -> float | None:
    if stream.start_time is None or stream.time_base is None:
        return None
    return float(stream.start_time * stream.time_base)


def _output_size(
    width: int, height: int, sar: Fraction | None, quarter_turns: int, short_side: int
) -> tuple[int, int]:
    """Size to scale the unrotated frame to, so the rotated one has ``short_side``."""
    display_w = width * float(sar) if sar else float(width)
    display_h = float(height)
    if quarter_turns % 2:
        display_w, display_h = display_h, display_w
    scale = short_side / min(display_w, display_h)
    out_w = max(1, round(display_w * scale))
    out_h = max(1, round(display_h * scale))
    if quarter_turns % 2:
        out_w, out_h = out_h, out_w
    return out_w, out_h


_MCU_ROWS = 16  # Rows of one JPEG 4:2:0 MCU: the most libjpeg-turbo reads past a plane's end.


def _plane(plane) -> np.ndarray:
    """One image plane of a frame as ``uint8 [height, width]`` (a strided view)."""
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def _edge_padded(plane: np.ndarray) -> np.ndarray:
    """``plane`` as a C-contiguous array whose buffer goes on with copies of its last row.

    libjpeg-turbo's planar encoder reads up to an MCU past the end of a plane of odd
    height; over uninitialized memory that would make the same frame encode to different
    bytes from run to run, so past the end it reads the edge row libjpeg would replicate.
    """
    height = plane.shape[0]
    buffer = np.empty((height + _MCU_ROWS, plane.shape[1]), np.uint8)
    buffer[:height] = plane
    buffer[height:] = plane[-1]
    return buffer[:height]


class _FrameConverter:
    """Rotates, resizes and JPEG-encodes decoded frames.

    Frames are scaled by swscale straight into full-range YUV 4:2:0 (JPEG's own colour
    space) and libjpeg-turbo encodes those planes (``simplejpeg``), so no frame is ever
    converted to RGB and back: half the cost of the RGB route, for a JPEG of the same
    quality setting.
    """

    def __init__(self, stream: av.video.stream.VideoStream, short_side: int, quality: int):
        self.short_side = short_side
        self.quality = quality
        sar = stream.sample_aspect_ratio
        self.sar = sar if sar and sar > 0 else None
        try:  # Old-style clockwise ``rotate`` tag, used when frames carry no display matrix.
            tags = {str(k).lower(): v for k, v in stream.metadata.items()}
            self.tag_rotation = -int(float(tags.get("rotate", 0)))
        except (ValueError, TypeError):
            self.tag_rotation = 0
        self.height = 0
        self.width = 0
        # One reformatter for the whole stream: ``VideoFrame.reformat`` builds a new
        # swscale context (filter tables included) for every frame, 3/4 of its cost.
        self._reformatter = av.video.reformatter.VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> bytes:
        try:
            rotation = frame.rotation or self.tag_rotation
        except (AttributeError, ValueError, TypeError):
            rotation = self.tag_rotation
        turns = round(rotation / 90) % 4
        width, height = _output_size(frame.width, frame.height, self.sar, turns, self.short_side)
        yuv = self._reformatter.reformat(
            frame, width=width, height=height, format="yuvj420p", interpolation="AREA"
        )
        planes = [np.rot90(_plane(p), turns) for p in yuv.planes]
        self.height, self.width = planes[0].shape
        return simplejpeg.encode_jpeg_yuv_planes(*map(_edge_padded, planes), quality=self.quality)


class _FrameSampler:
    """Turns decoded frames (any rate) into frames at ``fps`` by timestamps."""

    def __init__(
        self,
        fps: float,
        t0: float,
        t_end: float | None,
        convert: Callable[[av.VideoFrame], bytes],
        nominal_rate: float | None,
    ):
        self.fps = fps
        self.t0 = t0
        self.t_end = t_end
        self.convert = convert
        self.nominal_rate = nominal_rate
        self.frames: list[bytes] = []
        self.decoded = 0
        self._prev: tuple[float, av.VideoFrame] | None = None
        self._gap: float | None = None
        self.end_time: float | None = None

    def _next_time(self) -> float:
        return self.t0 + len(self.frames) / self.fps

    def _emit_until(self, limit: float) -> None:
        assert self._prev is not None
        jpeg = None
        while self._next_time() < limit - _EPS and (
            self.t_end is None or self._next_time() < self.t_end - _EPS
        ):
            if jpeg is None:
                jpeg = self.convert(self._prev[1])
            self.frames.append(jpeg)

    def push(self, frame: av.VideoFrame) -> None:
        """Adds the next decoded frame (presentation order)."""
        self.decoded += 1
        prev_t = self._prev[0] if self._prev else None
        if frame.pts is not None and frame.time is not None:
            t = float(frame.time)
        elif prev_t is not None:
            t = prev_t + (self._gap or 1.0 / (self.nominal_rate or self.fps))
        else:
            t = self.t0
        if prev_t is not None:
            t = max(t, prev_t)
            if t > prev_t:
                self._gap = t - prev_t
            self._emit_until(t)
        self._prev = (t, frame)

    def done(self) -> bool:
        """Whether every frame up to ``t_end`` has been produced."""
        return self.t_end is not None and self._next_time() >= self.t_end - _EPS

    def finish(self) -> list[bytes]:
        """Emits the last frame up to the end of its display time."""
        if self._prev is not None:
            t, frame = self._prev
            duration = None
            if frame.duration and frame.time_base:
                duration = float(frame.duration * frame.time_base)
            if not duration:
                duration = self._gap or 1.0 / (self.nominal_rate or self.fps)
            self.end_time = t + duration
            self._emit_until(self.end_time)
            self._prev = None
        return self.frames


# Audio whose timestamp is this far from the time the samples before it reach is moved
# there (gap: silence; overlap: dropped). Container timestamps jitter by < 1 ms.
_AUDIO_SLACK_S = 0.01
_AUDIO_MAX_GAP_S = 600.0  # Larger jumps are timestamp resets, not gaps: not filled.


class _AudioCollector:
    """Resamples audio frames to mono int16 and remembers where they start."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        self.chunks: list[np.ndarray] = []
        self.start: float | None = None
        self.first_input: float | None = None
        self.count = 0
        self.gaps: list[tuple[float, float]] = []  # (where, seconds): + silence, - dropped
        self._drop = 0  # Output samples still to drop (audio timestamped earlier than reached).
        self.padded = 0  # Samples of silence ``finish`` added before and after the audio.

    def _add(self, frames) -> None:
        for out in frames:
            if self.start is None and out.pts is not None and out.time_base:
                # Samples before the first stamped frame go just before it.
                self.start = float(out.pts * out.time_base) - self.count / self.sample_rate
            data = out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
            if self._drop:
                dropped = min(self._drop, data.shape[0])
                data, self._drop = data[dropped:], self._drop - dropped
            self.chunks.append(data)
            self.count += data.shape[0]

    def push(self, frame: av.AudioFrame) -> None:
        """Adds one decoded frame at the place its timestamp gives it."""
        if frame.pts is not None and frame.time is not None:
            if self.first_input is None:  # Used if the resampler gives no pts.
                self.first_input = float(frame.time) - self.count / self.sample_rate
            else:
                self._align(float(frame.time))
        self._add(self.resampler.resample(frame))

    def _align(self, t: float) -> None:
        """Keeps every sample at its timestamp (as FFmpeg's ``aresample=async``).

        Fills a gap before time ``t`` with silence, or drops audio stamped before the time
        already reached. A stream's samples are concatenated otherwise: after a dropout (a lost or
        undecodable packet, a recorder's pause) all later audio would move early by the
        gap and out of sync with the video.
        """
        reached = self.time()
        drift = t - reached
        if abs(drift) <= _AUDIO_SLACK_S or abs(drift) > _AUDIO_MAX_GAP_S:
            return  # In sync, or a timestamp jump (a reset) no silence should fill.
        self.gaps.append((reached, drift))
        samples = round(abs(drift) * self.sample_rate)
        if drift > 0:
            self.chunks.append(np.zeros([samples], np.int16))
            self.count += samples
        else:
            self._drop += samples

    def time(self) -> float:
        """Seconds reached so far."""
        origin = self.start if self.start is not None else self.first_input
        return (origin or 0.0) + (self.count - self._drop) / self.sample_rate

    def flush(self) -> None:
        """Collects what the resampler still holds."""
        self._add(self.resampler.resample(None))

    def finish(self, t0: float, num_samples: int | None, t_end: float | None) -> np.ndarray:
        """Returns samples aligned so that index 0 is ``t0``, cut or padded as asked."""
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros([0], np.int16)
        self.chunks = []
        start = self.start if self.start is not None else self.first_input
        start = t0 if start is None else start
        offset = round((start - t0) * self.sample_rate)
        self.padded = max(0, offset)
        if offset > 0:
            audio = np.concatenate([np.zeros([offset], np.int16), audio])
        elif offset < 0:
            audio = audio[-offset:]
        if num_samples is None and t_end is not None:
            num_samples = max(0, round((t_end - t0) * self.sample_rate))
            audio = audio[:num_samples]
        elif num_samples is not None:
            audio = audio[:num_samples]
            if audio.shape[0] < num_samples:
                self.padded += num_samples - audio.shape[0]
                pad = np.zeros([num_samples - audio.shape[0]], np.int16)
                audio = np.concatenate([audio, pad])
        return audio


def _audio_warnings(collector: _AudioCollector, num_samples: int) -> list[str]:
    """Warnings for audio placed by its timestamps or far shorter than the video."""
    warnings = []
    if collector.gaps:
        at, drift = max(collector.gaps, key=lambda gap: abs(gap[1]))
        warnings.append(
            f"the audio timestamps jump {len(collector.gaps)} time(s) (largest {drift:+.3f} s "
            f"at {at:.2f} s); kept each sample at its timestamp (silence in gaps, overlaps "
            "dropped)"
        )
    rate = collector.sample_rate
    if num_samples and collector.padded / rate > max(0.5, 0.1 * num_samples / rate):
        warnings.append(
            f"the audio covers {(num_samples - collector.padded) / rate:.2f} s of "
            f"the {num_samples / rate:.2f} s of video; the rest is silence"
        )
    return warnings


def _check_mp4_boxes(path: str, size: int) -> None:
    """Raises when an ISO-BMFF (mp4/mov/m4a) file's top-level boxes run past its end."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[4:8] != b"ftyp":
            return
        offset = 0
        while offset + 8 <= size:
            f.seek(offset)
            header = f.read(16)
            box_size = int.from_bytes(header[:4], "big")
            kind = header[4:8].decode("latin-1")
            if box_size == 1 and len(header) == 16:
                box_size = int.from_bytes(header[8:16], "big")
            if box_size == 0:  # The box runs to the end of the file.
                return
            if box_size < 8:
                break
            if offset + box_size > size:
                raise MediaError(
                    "truncated",
                    f"truncated: the mp4 box {kind!r} needs {offset + box_size} "
                    f"bytes but the file has {size} (re-download or re-encode it)",
                )
            offset += box_size


def _declared_duration(container: av.container.InputContainer) -> float | None:
    if container.duration:
        return container.duration / av.time_base
    return None


def _check_length(container, origin: float, sampler, collector, warnings: list[str]) -> None:
    """Flags files that decode to far less than the container declares."""
    declared = _declared_duration(container)
    ends = []
    if sampler is not None and sampler.end_time is not None:
        ends.append(sampler.end_time - origin)
    if collector is not None and collector.count:
        ends.append(collector.time() - origin)
    if not declared or not ends:
        return  # Nothing decoded: the callers give a more specific reason.
    got = max(ends)
    # Audio-only durations may be bitrate estimates (VBR MP3): only warn for those.
    if got < 0.5 * declared and sampler is not None:
        raise MediaError(
            "truncated",
            f"truncated: decoded {got:.2f} s of the {declared:.2f} s "
            "the container declares (re-download or re-encode it)",
        )
    elif got < declared - max(0.5, 0.1 * declared):
        warnings.append(f"decoded {got:.2f} s of the {declared:.2f} s the container declares")


_SIGNATURES = (
    (0, b"\x1aE\xdf\xa3", "Matroska/WebM"),
    (0, b"RIFF", "RIFF (WAV/AVI)"),
    (4, b"ftyp", "MP4/MOV"),
    (0, b"OggS", "Ogg"),
    (0, b"fLaC", "FLAC"),
    (0, b"ID3", "MP3"),
    (0, b"FLV", "FLV"),
    (0, b"\x00\x00\x01\xba", "MPEG-PS"),
)


def _container_name(path: str) -> str | None:
    """The container a file's first bytes announce, if any."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    for offset, magic, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def _open(path: str) -> av.container.InputContainer:
    if os.path.isdir(path):
        raise MediaError(
            "unreadable",
            "a folder, not a media file (list the files inside it, "
            "or give the folder itself as the input)",
        )
    try:
        size = os.path.getsize(path)
    except FileNotFoundError as err:
        raise MediaError(
            "missing", "file not found (fix the path in the list or restore the file)"
        ) from err
    except OSError as err:
        raise MediaError(
            "unreadable",
            f"cannot read the file: {_one_line(err)} (check the path and its permissions)",
        ) from err
    if size == 0:
        raise MediaError(
            "zero_byte", "zero-byte file (the copy or download is empty; fetch it again)"
        )
    try:
        _check_mp4_boxes(path, size)
    except OSError as err:
        raise MediaError(
            "unreadable", f"cannot read the file: {_one_line(err)} (check the file's permissions)"
        ) from err
    try:
        return av.open(path, metadata_errors="replace")
    except av.EOFError as err:
        raise MediaError(
            "truncated",
            "truncated: the file ends before its first media data (re-download or re-encode it)",
        ) from err
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as err:
        name = _container_name(path)
        if name is not None:
            raise MediaError(
                "truncated",
                f"truncated or corrupt {name} file: could not open: "
                f"{_one_line(err)} (re-download or re-encode it)",
            ) from err
        raise MediaError(
            "not_media",
            f"not a media file / could not open: {_one_line(err)} (check the "
            "file's type; remove it or re-encode it)",
        ) from err


def decode_media(
    path: str | os.PathLike,
    *,
    fps: float = DEFAULTS.fps,
    short_side: int = DEFAULTS.short_side,
    sample_rate: int = DEFAULTS.sample_rate,
    jpeg_quality: int = DEFAULTS.jpeg_quality,
    video_stream: int | None = DEFAULTS.video_stream,
    audio_stream: int | None = DEFAULTS.audio_stream,
    require_audio: bool = DEFAULTS.require_audio,
    require_video: bool = True,
    start: float | None = None,
    end: float | None = None,
    decode_threads: int = 0,
) -> DecodedMedia:
    """Decodes one file; see the module docstring for the timing rules.

    Args:
        path: Media file.
        fps: Output frame rate.
        short_side: Output short side in pixels.
        sample_rate: Output audio rate in Hz.
        jpeg_quality: JPEG quality, 1-100.
        video_stream: Index among the file's video streams; ``None`` picks the best one.
        audio_stream: Index among the file's audio streams; ``None`` picks the best one.
        require_audio: Raise when there is no audio stream (else keep video only).
        require_video: Raise when there is no video stream (else keep audio only).
        start: Cut start in seconds after the origin (``None``: from the start).
        end: Cut end in seconds after the origin (``None``: to the end).
        decode_threads: FFmpeg decoder threads per stream (frame and slice threading);
            ``0`` lets FFmpeg choose (one per core), ``1`` decodes in the calling thread:
            what each of several processes sharing the cores should use.

    Returns:
        The decoded media.

    Raises:
        MediaError: When the file cannot be ingested; its ``reason`` is one line.
    """
    path = os.fspath(path)
    # A cut decodes from a seek this many seconds before its start; ``None``: from the file's
    # start. The next one is tried when the seek lands after the cut's first key frame.
    for seek_back in (0.0, 10.0, 60.0, None) if start else (None,):
        container = _open(path)
        try:
            return _decode(
                container,
                fps=fps,
                short_side=short_side,
                sample_rate=sample_rate,
                jpeg_quality=jpeg_quality,
                video_stream=video_stream,
                audio_stream=audio_stream,
                require_audio=require_audio,
                require_video=require_video,
                start=start,
                end=end,
                decode_threads=decode_threads,
                seek_back=seek_back,
            )
        except _SeekMissed:
            continue
        finally:
            container.close()
    raise AssertionError("unreachable: the last try decodes from the file's start")


class _SeekMissed(Exception):
    """After a seek, the first key frame comes after the cut's start (or never comes)."""


def probe_duration(path: str | os.PathLike) -> float | None:
    """The duration a file's container declares, in seconds (``None``: unknown/unreadable).

    Reads the header only; used to plan the pieces of long files before decoding.
    """
    try:
        with av.open(os.fspath(path), metadata_errors="replace") as container:
            return _declared_duration(container)
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return None


# Demuxers FFmpeg picks for stills and text (by extension): not audio or video.
_NOT_MEDIA_FORMATS = frozenset({"tty", "image2", "apng", "gif", "webp", "ico", "txt"})


def _check_is_media(container) -> None:
    """Refuses files FFmpeg opens but which are stills or text (a README, a JPEG)."""
    names = set((getattr(container.format, "name", "") or "").split(","))
    if names & _NOT_MEDIA_FORMATS or any(n.endswith("_pipe") for n in names):
        raise MediaError(
            "not_media",
            f"not a media file: FFmpeg reads it as "
            f"{container.format.name!r} (a still image or text), not "
            "audio or video (remove it from the input)",
        )


def _streams(container, *, video_stream, audio_stream, require_audio, require_video):
    """The video and audio streams to decode (``None``: none), after the header's refusals."""
    _check_is_media(container)
    if not container.streams:
        raise MediaError(
            "zero_length", "zero-length clip: the file holds no stream with data (remove the file)"
        )
    vstream = _select(container, "video", video_stream)
    astream = _select(container, "audio", audio_stream)
    if vstream is None and require_video:
        raise MediaError(
            "no_video",
            "no video stream (this dataset requires video; pass "
            "--allow_missing_video to keep audio-only files)",
        )
    if astream is None and require_audio:
        raise MediaError(
            "no_audio",
            "no audio stream (this dataset requires audio; pass "
            "--allow_missing_audio to keep video-only files)",
        )
    if vstream is None and astream is None:
        raise MediaError("no_streams", "no video or audio stream (remove the file)")
    return vstream, astream


def header_problem(
    path: str | os.PathLike,
    *,
    video_stream: int | None = DEFAULTS.video_stream,
    audio_stream: int | None = DEFAULTS.audio_stream,
    require_audio: bool = DEFAULTS.require_audio,
    require_video: bool = True,
) -> MediaError | None:
    """Why :func:`decode_media` would skip the file, as far as its header tells.

    Opens the container only; decodes nothing. ``None``: nothing found, though the file
    may still be skipped while decoding (corrupt data, no decodable frame).
    """
    try:
        container = _open(os.fspath(path))
    except MediaError as err:
        return err
    try:
        _streams(
            container,
            video_stream=video_stream,
            audio_stream=audio_stream,
            require_audio=require_audio,
            require_video=require_video,
        )
    except MediaError as err:
        return err
    finally:
        container.close()
    return None


def _decode(
    container,
    *,
    fps,
    short_side,
    sample_rate,
    jpeg_quality,
    video_stream,
    audio_stream,
    require_audio,
    require_video,
    start,
    end,
    decode_threads,
    seek_back=None,
) -> DecodedMedia:
    vstream, astream = _streams(
        container,
        video_stream=video_stream,
        audio_stream=audio_stream,
        require_audio=require_audio,
        require_video=require_video,
    )
    if start is not None and end is not None and end <= start:
        raise MediaError(
            "zero_length",
            f"zero-length clip: cut [{start}, {end}] is empty (fix the start/end in the list)",
        )

    main = vstream if vstream is not None else astream
    origin = _start_seconds(main)
    if origin is None:
        origin = 0.0
    t0 = origin + (start or 0.0)
    t_end = origin + end if end is not None else None
    sought = False
    if start and seek_back is not None:
        try:
            container.seek(
                int(max(t0 - seek_back, 0.0) / main.time_base), stream=main, backward=True
            )
            sought = True
        except av.FFmpegError:
            pass  # Decode from the beginning instead.
    # Containers without an index (MPEG-TS, AVCHD) seek to any packet, not a key frame:
    # the frames decoded before the first key frame lack their references (grey garbage).
    awaiting_key = sought and vstream is not None

    result = DecodedMedia()
    sampler = None
    if vstream is not None:
        rate = vstream.average_rate or vstream.guessed_rate
        convert = _FrameConverter(vstream, short_side, jpeg_quality)
        sampler = _FrameSampler(fps, t0, t_end, convert, float(rate) if rate else None)
    collector = _AudioCollector(sample_rate) if astream is not None else None
    streams = [s for s in (vstream, astream) if s is not None]
    for stream in streams:
        stream.thread_type = "AUTO"
        stream.thread_count = decode_threads
    packets = {s.index: 0 for s in streams}
    errors = 0

    def finished() -> bool:
        video_done = sampler is None or sampler.done()
        audio_done = collector is None or (t_end is not None and collector.time() >= t_end)
        return t_end is not None and video_done and audio_done

    try:
        for packet in container.demux(streams):
            if packet.size:
                packets[packet.stream.index] += 1
            try:
                decoded = packet.decode()
            except (av.FFmpegError, ValueError) as err:
                errors += 1
                if errors == 1:
                    result.warnings.append(f"decode error (skipped packet): {_one_line(err)}")
                continue
            for frame in decoded:
                if sampler is not None and packet.stream is vstream:
                    if awaiting_key:
                        if not frame.key_frame:
                            continue
                        awaiting_key = False
                        if frame.time is not None and float(frame.time) > t0 + _EPS:
                            raise _SeekMissed
                    sampler.push(frame)
                elif collector is not None:
                    collector.push(frame)
            if finished():
                break
    except (av.FFmpegError, OSError, ValueError) as err:
        result.warnings.append(f"read error, kept what was decoded: {_one_line(err)}")
    if awaiting_key:
        raise _SeekMissed  # No key frame after the seek: decode from further back.
    if errors > 1:
        result.warnings.append(f"{errors} packets failed to decode")

    if sampler is not None:
        frames = sampler.finish()
    if collector is not None:
        collector.flush()
    if start is None and end is None:
        _check_length(container, origin, sampler, collector, result.warnings)
    if sampler is not None:
        if not sampler.decoded:
            declared = packets[vstream.index] or vstream.frames or vstream.duration
            if declared:
                raise MediaError(
                    "truncated",
                    "truncated: decoded 0 frames (the file is cut "
                    "short or corrupt; re-download or re-encode it)",
                )
            raise MediaError(
                "zero_length",
                "zero-length clip: the video stream holds no frames (remove the file)",
            )
        if not frames:
            raise MediaError(
                "zero_length",
                "zero-length clip: no frames inside the cut "
                f"[{start}, {end}] (fix the start/end in the list)",
            )
        result.jpeg_frames, result.fps = frames, float(fps)
        result.height, result.width = convert.height, convert.width
    if collector is not None:
        num_samples = round(len(result.jpeg_frames) * sample_rate / fps) if sampler else None
        if collector.count == 0 and sampler is None:
            raise MediaError(
                "zero_length",
                "zero-length clip: no audio samples (remove the file or fix its start/end)",
            )
        if collector.count == 0:
            if packets[astream.index]:
                problem, kind = "truncated: decoded 0 audio samples", "truncated"
            else:
                problem, kind = "the audio stream holds no samples", "no_audio"
            if require_audio:
                raise MediaError(
                    kind,
                    f"{problem} (re-encode the file or pass "
                    "--allow_missing_audio to keep it video-only)",
                )
            result.warnings.append(f"{problem}; kept video only")
        else:
            result.audio = collector.finish(t0, num_samples, t_end)
            result.sample_rate = int(sample_rate)
            result.warnings.extend(_audio_warnings(collector, result.audio.shape[0]))
            if sampler is None and result.audio.shape[0] == 0:
                raise MediaError(
                    "zero_length",
                    "zero-length clip: no audio samples inside the "
                    f"cut [{start}, {end}] (fix the start/end)",
                )
    return result


__all__ = ["DecodedMedia", "MediaError", "decode_media", "probe_duration"]
