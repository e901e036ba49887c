"""Tests of avts_tf.data.ingestion.media on tiny files generated with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import tensorflow as tf

from avts_tf.data.ingestion.media import MediaError, decode_media


def write_media(
    path: Path,
    *,
    frame_times=None,
    fps=10,
    seconds=1.0,
    size=(32, 32),
    audio=True,
    video=True,
    sample_rate=16000,
    audio_start=0.0,
    audio_seconds=None,
    click_at=None,
    levels=None,
    rotation=None,
    vcodec="mpeg4",
    acodec="pcm_s16le",
    faststart=False,
    metadata=None,
    metadata_encoding="utf-8",
) -> Path:
    """Writes a tiny file: frame ``k`` is a flat gray of ``levels[k]`` (default ``20k``).

    Audio is silent mono PCM starting at ``audio_start`` seconds, with one full-scale
    sample at ``click_at`` seconds.  ``rotation`` sets a display matrix and draws a
    white top-left quadrant instead of flat frames.
    """
    w, h = size
    if frame_times is None:
        frame_times = [i / fps for i in range(round(seconds * fps))]
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options, metadata_encoding=metadata_encoding) as c:
        if metadata:
            c.metadata.update(metadata)
        vs = a_s = None
        if video:
            vs = c.add_stream(vcodec, rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.codec_context.time_base = Fraction(1, 1000)
            if rotation is not None:
                vs.set_display_rotation(rotation)
        if audio:
            a_s = c.add_stream(acodec, rate=sample_rate, layout="mono")
        c.start_encoding()
        if vs is not None:
            for k, t in enumerate(frame_times):
                level = levels[k] if levels else min(255, 20 * k)
                img = np.full((h, w, 3), level, np.uint8)
                if rotation is not None:
                    img[:] = 0
                    img[: h // 2, : w // 2] = 255
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
                c.mux(vs.encode(frame))
            c.mux(vs.encode())
        if a_s is not None:
            n = round((seconds if audio_seconds is None else audio_seconds) * sample_rate)
            pcm = np.zeros(n, np.int16)
            if click_at is not None:
                pcm[round((click_at - audio_start) * sample_rate)] = 30000
            for s in range(0, n, 1024):
                frame = av.AudioFrame.from_ndarray(
                    pcm[None, s : s + 1024], format="s16", layout="mono"
                )
                frame.sample_rate = sample_rate
                frame.pts = s + round(audio_start * sample_rate)
                frame.time_base = Fraction(1, sample_rate)
                c.mux(a_s.encode(frame))
            c.mux(a_s.encode())
    return path


def levels_of(media) -> list[int]:
    return [int(tf.io.decode_jpeg(f).numpy().mean()) for f in media.jpeg_frames]


def skip_kind(path: Path, **kwargs) -> str:
    with pytest.raises(MediaError) as info:
        decode_media(path, **kwargs)
    reason = info.value.reason
    assert "\n" not in reason and "(" in reason  # One line, with a hint in brackets.
    return info.value.kind


def test_constant_rate_resampled_by_timestamps(tmp_path):
    path = write_media(
        tmp_path / "a.mp4", fps=10, seconds=2, vcodec="libx264", acodec="aac", faststart=True
    )
    media = decode_media(path, fps=8, short_side=40)
    assert len(media.jpeg_frames) == 16  # 2 s at 8 fps.
    # Output frame i shows source frame floor(i * 10 / 8), whose level is 20 * that.
    expected = [min(255, 20 * (i * 10 // 8)) for i in range(16)]
    assert np.allclose(levels_of(media), expected, atol=6)
    assert (media.height, media.width) == (40, 40)
    assert media.audio.dtype == np.int16 and media.audio.shape == (32000,)
    assert media.sample_rate == 16000 and media.fps == 8.0


def test_variable_frame_rate(tmp_path):
    times = [0.0, 0.1, 0.15, 0.5, 0.55, 0.9]
    path = write_media(tmp_path / "vfr.mkv", frame_times=times, levels=[0, 40, 80, 120, 160, 200])
    media = decode_media(path, fps=10)
    # At t = i/10 the screen shows the last frame with time <= t; the last lasts 0.1 s.
    expected = [0, 40, 80, 80, 80, 120, 160, 160, 160, 200]
    assert np.allclose(levels_of(media), expected, atol=6)


@pytest.mark.parametrize(
    ("rate", "audio_start", "click"),
    [
        (16000, 0.25, 0.5),  # Audio starts late: padded in front.
        (16000, -0.2, 0.3),  # Audio starts early: trimmed in front.
        (44100, 0.0, 0.625),  # Resampled.
    ],
)
def test_audio_alignment_click(tmp_path, rate, audio_start, click):
    path = write_media(
        tmp_path / "click.mkv",
        sample_rate=rate,
        audio_start=audio_start,
        click_at=click,
        seconds=1.0,
        audio_seconds=0.7,
    )
    media = decode_media(path, fps=10, sample_rate=16000)
    assert media.audio.shape == (16000,)  # Padded to the 1 s of video.
    assert abs(int(np.argmax(np.abs(media.audio))) - round(click * 16000)) <= 2
    assert not media.audio[13000:].any()  # The padding after the audio's end is silent.


def test_audio_longer_than_video_is_trimmed(tmp_path):
    path = write_media(tmp_path / "long.mkv", seconds=0.5, audio_seconds=2.0)
    media = decode_media(path, fps=8)
    assert len(media.jpeg_frames) == 4 and media.audio.shape == (8000,)


@pytest.mark.parametrize(
    ("degrees", "corner"), [(90, "bottom_left"), (-90, "top_right"), (180, "bottom_right")]
)
def test_rotation(tmp_path, degrees, corner):
    path = write_media(
        tmp_path / "rot.mp4", size=(32, 48), rotation=degrees, audio=False, vcodec="libx264"
    )
    media = decode_media(path, fps=10, short_side=40, require_audio=False)
    img = tf.io.decode_jpeg(media.jpeg_frames[0]).numpy().mean(-1)
    if degrees % 180:
        assert img.shape == (40, 60)  # A 32x48 portrait frame shown as landscape.
    else:
        assert img.shape == (60, 40)
    h, w = img.shape
    quadrants = {
        "top_left": img[: h // 2, : w // 2],
        "top_right": img[: h // 2, w // 2 :],
        "bottom_left": img[h // 2 :, : w // 2],
        "bottom_right": img[h // 2 :, w // 2 :],
    }
    assert max(quadrants, key=lambda k: quadrants[k].mean()) == corner


def test_rotate_tag_fallback(tmp_path):
    path = tmp_path / "tag.mkv"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 32, 48, "yuv420p"
        vs.metadata["rotate"] = "90"  # Clockwise, as old muxers wrote it.
        img = np.zeros((48, 32, 3), np.uint8)
        img[:24, :16] = 255
        frame = av.VideoFrame.from_ndarray(img, "rgb24")
        frame.pts, frame.time_base = 0, Fraction(1, 10)
        c.mux(vs.encode(frame))
        c.mux(vs.encode())
    media = decode_media(path, short_side=40, require_audio=False)
    img = tf.io.decode_jpeg(media.jpeg_frames[0]).numpy().mean(-1)
    assert img.shape == (40, 60)
    assert img[:20, 30:].mean() > 200 and img[20:].mean() < 50  # Top-left became top-right.


def test_cut(tmp_path):
    path = write_media(tmp_path / "cut.mkv", seconds=2, click_at=1.25)
    media = decode_media(path, fps=10, start=1.0, end=1.5)
    assert len(media.jpeg_frames) == 5 and media.audio.shape == (8000,)
    assert np.allclose(levels_of(media), [200, 220, 240, 255, 255], atol=6)
    assert int(np.argmax(media.audio)) == 4000


def test_audio_only_and_video_only(tmp_path):
    wav = write_media(tmp_path / "a.wav", video=False, seconds=0.5)
    media = decode_media(wav, require_video=False)
    assert media.jpeg_frames == [] and media.audio.shape == (8000,) and media.fps == 0
    assert skip_kind(wav) == "no_video"
    silent = write_media(tmp_path / "v.mp4", audio=False, vcodec="libx264")
    assert skip_kind(silent) == "no_audio"
    media = decode_media(silent, require_audio=False)
    assert len(media.jpeg_frames) == 8 and media.audio.shape == (0,) and media.sample_rate == 0


def test_stream_choice(tmp_path):
    path = write_media(tmp_path / "a.mkv")
    assert skip_kind(path, video_stream=1) == "bad_stream"
    assert len(decode_media(path, video_stream=0, audio_stream=0).jpeg_frames) == 8
    wav = write_media(tmp_path / "a.wav", video=False)
    assert decode_media(wav, video_stream=0, require_video=False).audio.shape == (16000,)


def test_non_utf8_metadata(tmp_path):
    path = write_media(
        tmp_path / "meta.mkv",
        metadata={"title": "caf\u00e9 \u00e0 la cr\u00e8me"},
        metadata_encoding="latin-1",
    )
    with pytest.raises(UnicodeDecodeError):
        with av.open(str(path)) as c:
            dict(c.metadata)
    assert len(decode_media(path).jpeg_frames) == 8


def test_skip_reasons(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert skip_kind(empty) == "zero_byte"
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    assert skip_kind(text) == "not_media"
    assert skip_kind(tmp_path / "missing.mp4") == "missing"
    folder = tmp_path / "clips.mp4"  # A folder listed as a file.
    folder.mkdir()
    with pytest.raises(MediaError, match=r"^a folder, not a media file \(list the files"):
        decode_media(folder)
    for faststart in (True, False):
        full = write_media(
            tmp_path / "full.mp4", seconds=2, vcodec="libx264", acodec="aac", faststart=faststart
        )
        cut = tmp_path / f"cut{faststart}.mp4"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        assert skip_kind(cut) == "truncated"
    mkv = write_media(tmp_path / "full.mkv", seconds=1)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(mkv.read_bytes()[:400])
    assert skip_kind(cut) == "truncated"
    zero = write_media(
        tmp_path / "zero.mp4", frame_times=[], audio_seconds=0, vcodec="libx264", acodec="aac"
    )
    assert skip_kind(zero) == "zero_length"
    clip = write_media(tmp_path / "clip.mkv", seconds=1)
    assert skip_kind(clip, start=5.0, end=6.0) == "zero_length"
    assert skip_kind(clip, start=0.5, end=0.5) == "zero_length"


def test_frame_jpeg_same_bytes_every_time_at_odd_heights():
    """An odd output height (a portrait 9:16 frame at short side 128 is 128 x 227) encodes
    to the same JPEG every time, and that JPEG shows the frame. libjpeg-turbo's planar
    encoder reads past the end of an odd-height plane; over unpadded planes this test got
    two different byte strings from its 20 encodes."""
    from types import SimpleNamespace

    from avts_tf.data.ingestion import media

    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (29, 16, 3), np.uint8)  # 16 x 16 px patches of one colour
    rgb = np.repeat(np.repeat(blocks, 16, 0), 16, 1)[:454]
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")  # 256 x 454: 128 x 227 out
    convert = media._FrameConverter(
        SimpleNamespace(sample_aspect_ratio=None, metadata={}), short_side=128, quality=90
    )
    encoded = set()
    for _ in range(20):
        _ = [rng.integers(0, 256, (300, 300), np.uint8) for _ in range(4)]  # reuse memory
        encoded.add(convert(frame))
    assert (convert.height, convert.width) == (227, 128)
    assert len(encoded) == 1
    decoded = tf.io.decode_jpeg(encoded.pop()).numpy().astype(float)
    expected = frame.reformat(
        width=128, height=227, format="rgb24", interpolation="AREA"
    ).to_ndarray()
    assert decoded.shape == (227, 128, 3)
    rows, cols = np.mgrid[:227, :128]
    inside = (rows % 8 >= 2) & (rows % 8 <= 5) & (cols % 8 >= 2) & (cols % 8 <= 5)
    assert np.abs(decoded - expected)[inside].mean() < 5.0  # 3.3 (old RGB route: 2.2)


def test_decoder_threads_change_nothing_but_speed(tmp_path, monkeypatch):
    """A pool's workers decode single-threaded (FFmpeg's own choice, one thread per core,
    only in a process decoding alone); the frames and samples are the same either way."""
    from avts_tf.data.ingestion import prepare

    monkeypatch.setattr(prepare, "_usable_cores", lambda: 2)
    assert [prepare.threads_per_decoder(n) for n in (1, 2, 3)] == [0, 1, 1]
    monkeypatch.setattr(prepare, "_usable_cores", lambda: 16)
    assert [prepare.threads_per_decoder(n) for n in (1, 2, 4, 32)] == [0, 8, 4, 1]

    levels = [(37 * k) % 256 for k in range(30)]
    path = write_media(
        tmp_path / "a.mp4",
        fps=25,
        seconds=1.2,
        size=(160, 96),
        levels=levels,
        vcodec="libx264",
        acodec="aac",
        faststart=True,
    )
    decoded = [decode_media(path, fps=25, short_side=64, decode_threads=n) for n in (0, 1, 2)]
    for media in decoded[1:]:
        assert media.jpeg_frames == decoded[0].jpeg_frames
        np.testing.assert_array_equal(media.audio, decoded[0].audio)
    assert np.allclose(levels_of(decoded[1]), levels, atol=6)


def _write_audio_parts(
    path: Path, parts: list[tuple[float, np.ndarray]], seconds: float, sample_rate: int = 16000
) -> Path:
    """A flat 10 fps video of ``seconds`` and PCM audio parts, each stamped at its start."""
    with av.open(str(path), "w") as c:
        video = c.add_stream("mpeg4", rate=10)
        video.width = video.height = 32
        audio = c.add_stream("pcm_s16le", rate=sample_rate, layout="mono")
        for k in range(round(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 8 * k, np.uint8), "rgb24")
            c.mux(video.encode(frame))
        c.mux(video.encode())
        for start_s, pcm in parts:
            for s in range(0, len(pcm), 800):  # 50 ms frames: exact in Matroska's 1 ms ticks
                frame = av.AudioFrame.from_ndarray(
                    pcm[None, s : s + 800], format="s16", layout="mono"
                )
                frame.sample_rate = sample_rate
                frame.pts = round(start_s * sample_rate) + s
                frame.time_base = Fraction(1, sample_rate)
                c.mux(audio.encode(frame))
        c.mux(audio.encode())
    return path


def _ramp(n: int, base: int) -> np.ndarray:
    return (base + np.arange(n) % 5000).astype(np.int16)


def test_audio_after_a_dropout_stays_at_its_timestamps(tmp_path):
    first, second = _ramp(16000, 1000), _ramp(16000, 20000)
    path = _write_audio_parts(tmp_path / "dropout.mkv", [(0.0, first), (1.5, second)], 3.0)
    media = decode_media(path, fps=10, short_side=32, sample_rate=16000)
    want = np.concatenate([first, np.zeros(8000, np.int16), second, np.zeros(8000, np.int16)])
    np.testing.assert_array_equal(media.audio, want)
    assert media.warnings == [
        "the audio timestamps jump 1 time(s) (largest +0.500 s at 1.00 s); kept each sample "
        "at its timestamp (silence in gaps, overlaps dropped)"
    ]


def test_audio_stamped_twice_keeps_the_later_part_at_its_timestamps():
    # Muxers refuse timestamps that go back, so the decoded frames are made here.
    from avts_tf.data.ingestion.media import _AudioCollector

    first, second = _ramp(16000, 1000), _ramp(16000, 20000)
    collector = _AudioCollector(16000)
    for start_s, pcm in [(0.0, first), (0.75, second)]:
        for s in range(0, len(pcm), 800):
            frame = av.AudioFrame.from_ndarray(pcm[None, s : s + 800], format="s16", layout="mono")
            frame.sample_rate = 16000
            frame.pts, frame.time_base = round(start_s * 16000) + s, Fraction(1, 16000)
            collector.push(frame)
    collector.flush()
    audio = collector.finish(0.0, 32000, None)
    np.testing.assert_array_equal(
        audio, np.concatenate([first, second[4000:], np.zeros(4000, np.int16)])
    )
    assert collector.gaps == [(1.0, -0.25)]


def test_audio_frames_without_timestamps_go_before_the_first_stamped_one():
    from avts_tf.data.ingestion.media import _AudioCollector

    pcm = _ramp(8000, 1000)
    collector = _AudioCollector(16000)
    for s in range(0, 8000, 800):  # The first three frames carry no timestamp.
        frame = av.AudioFrame.from_ndarray(pcm[None, s : s + 800], format="s16", layout="mono")
        frame.sample_rate = 16000
        if s >= 2400:
            frame.pts, frame.time_base = 1600 + s, Fraction(1, 16000)  # 0.1 s + s
        collector.push(frame)
    collector.flush()
    assert collector.gaps == []
    audio = collector.finish(0.0, 9600, None)
    np.testing.assert_array_equal(audio, np.concatenate([np.zeros(1600, np.int16), pcm]))


def test_audio_far_shorter_than_the_video_is_named(tmp_path):
    path = _write_audio_parts(tmp_path / "short.mkv", [(0.0, _ramp(4800, 1000))], 3.0)
    media = decode_media(path, fps=10, short_side=32, sample_rate=16000)
    np.testing.assert_array_equal(media.audio[:4800], _ramp(4800, 1000))
    assert not media.audio[4800:].any() and media.audio.shape == (48000,)
    assert media.warnings == ["the audio covers 0.30 s of the 3.00 s of video; the rest is silence"]


def test_a_cut_of_a_file_without_an_index_starts_at_a_key_frame(tmp_path):
    # MPEG-TS seeks to any packet: frames decoded before the next key frame lack their
    # references. The cut must hold the frames a whole decode holds at the same times.
    path = tmp_path / "camera.ts"
    with av.open(str(path), "w") as c:
        video = c.add_stream("libx264", rate=25)
        video.width = video.height = 64
        video.codec_context.gop_size = 50
        audio = c.add_stream("aac", rate=16000, layout="mono")
        for k in range(300):  # 12 s; each frame its own level and a moving bar
            pixels = np.full((64, 64, 3), 20 + (k % 100) * 2, np.uint8)
            pixels[:, k % 64] = 255
            c.mux(video.encode(av.VideoFrame.from_ndarray(pixels, "rgb24")))
        c.mux(video.encode())
        tone = (0.3 * np.sin(np.arange(12 * 16000) / 9.0)).astype(np.float32)
        for s in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(
                tone[None, s : s + 1024], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, s
            c.mux(audio.encode(frame))
        c.mux(audio.encode())
    whole = decode_media(path, fps=25, short_side=32, sample_rate=16000)
    for start in (5.0, 7.2):
        cut = decode_media(
            path, fps=25, short_side=32, sample_rate=16000, start=start, end=start + 2.0
        )
        first = round(start * 25)
        assert cut.jpeg_frames == whole.jpeg_frames[first : first + 50], start
        np.testing.assert_array_equal(cut.audio, whole.audio[first * 640 : (first + 50) * 640])
