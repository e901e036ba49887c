"""Read a media file into arrays and write arrays back as H.264 / AAC, with PyAV.

Test material with known edits (an audio shift, a re-encode, a crop, a speed change, noise)
is made by reading a file, editing the arrays and writing a new file
(``avts_tf.evaluation.offset``, ``avts_tf.evaluation.fingerprint``).
"""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction

import av
import numpy as np


@dataclasses.dataclass
class Clip:
    """A file's decoded streams.

    Attributes:
        frames: ``[T, H, W, 3]`` uint8 RGB frames.
        fps: Frame rate.
        audio: ``[N]`` float32 mono samples in ``[-1, 1]``.
        sample_rate: Audio rate in Hz.
    """

    frames: np.ndarray
    fps: Fraction
    audio: np.ndarray
    sample_rate: int


def read(path: str | os.PathLike) -> Clip:
    """Decodes the first video and audio streams of ``path`` (audio mixed to mono)."""
    with av.open(os.fspath(path)) as container:
        fps = container.streams.video[0].average_rate or Fraction(25)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(os.fspath(path)) as container:
        rate = container.streams.audio[0].rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = []
        for frame in container.decode(audio=0):
            chunks += [r.to_ndarray()[0] for r in resampler.resample(frame)]
        chunks += [r.to_ndarray()[0] for r in resampler.resample(None)]
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return Clip(frames, Fraction(fps), audio, int(rate))


def write(
    path: str | os.PathLike,
    clip: Clip,
    *,
    crf: int = 18,
    video_bitrate: int | None = None,
    audio_bitrate: int | None = None,
) -> None:
    """Encodes ``clip`` as an ``.mp4`` (H.264 ``yuv420p``, mono AAC).

    Args:
        path: Output file.
        clip: What to write (frames of even width and height).
        crf: H.264 quality when ``video_bitrate`` is not given (lower: better).
        video_bitrate: Target video bit rate in bit/s (a low-bitrate re-encode).
        audio_bitrate: Target audio bit rate in bit/s.
    """
    height, width = clip.frames.shape[1:3]
    with av.open(os.fspath(path), "w") as out:
        video = out.add_stream("h264", rate=clip.fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if video_bitrate:
            video.bit_rate = int(video_bitrate)
        else:
            video.options = {"crf": str(crf)}
        audio = out.add_stream("aac", rate=clip.sample_rate, layout="mono")
        if audio_bitrate:
            audio.bit_rate = int(audio_bitrate)
        for frame in clip.frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        samples = np.clip(clip.audio, -1.0, 1.0).astype(np.float32)
        block = 1024
        for begin in range(0, len(samples), block):
            frame = av.AudioFrame.from_ndarray(
                samples[begin : begin + block][None], format="flt", layout="mono"
            )
            frame.sample_rate = clip.sample_rate
            frame.pts = begin
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)


def resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Frames resized to ``width`` x ``height`` (FFmpeg's bicubic scaler)."""
    return np.stack(
        [
            av.VideoFrame.from_ndarray(f, format="rgb24")
            .reformat(width=width, height=height, format="rgb24")
            .to_ndarray()
            for f in frames
        ]
    )
