"""A procedural audio-visual world whose sounds are caused by visible events.

Each video shows one or two objects of its class bouncing on a floor in front of a
static textured background. Every floor contact ("strike") is visible (the object
sits on the floor, squashed, with a bright flash at the contact frame) and audible
(an impulse with the class timbre whose onset is the exact contact time). Strike
times are random, so two windows of the same video differ only in their timing.

The class sets both the look (colour and shape) and the sound (pitch, partials,
decay, noise) of its objects. Videos are written as real ``.mp4`` files (H.264
``yuv420p`` video, mono AAC audio) with PyAV, so they exercise the same ingestion
path as user files.

Slow drift. Each video also has a per-video "world time" shared by both modalities,
``u(t) = (phi + t) mod DRIFT_PERIOD_S``, with a phase ``phi`` drawn uniformly in
``[0, max(DRIFT_PERIOD_S - duration_s, 0)]``: videos up to ``DRIFT_PERIOD_S`` long never
wrap (``u`` rises steadily over the whole video), longer ones wrap once per period (the
scene then jumps back to dark and the hum back to low). Two cues follow ``u``:

* daylight: every pixel of a frame is multiplied by a global gain rising linearly from
  ``GAIN_LOW`` to ``GAIN_HIGH`` over a period, with a colour-temperature tint (red up,
  blue down) that shifts with it, so the scene brightens and warms steadily;
* a quiet ambient hum (a fundamental and two harmonics, ``sum(HUM_AMPLITUDES)`` in all,
  against strikes peaking near 0.45) whose fundamental glides phase-continuously from
  ``HUM_LOW_HZ`` up by ``HUM_OCTAVES`` octaves over a period.

What makes each pretext identifiable:

* AV synchronization: a strike's flash (contact frame) and its sound onset happen at
  the same time.
* Video speed: hop height against the interval between strikes (a hop's height is set
  by its duration, so a sped-up clip shows hops too high for their interval); the
  brightening rate.
* Audio speed: the strikes' decay times and the hum's glide rate. A task may change
  audio speed while keeping pitch (changing the spectrogram hop instead of resampling):
  decay times and glide rate still scale with speed, pitches do not move.
* Video direction: the daylight brightens forward; the flash afterglow follows (never
  precedes) the contact frame.
* Audio direction: strikes have a sharp attack and a slow decay; the hum rises forward.
* Order of two clips of one video: the later clip is brighter.
* Order of two audio clips of one video: the later clip has a higher hum.
* Order across modalities (a video clip against an audio clip): brightness and hum
  pitch are functions of the same world time ``u``.
* Class: the objects' colour and shape, and the strikes' timbre.

Layout written by :func:`generate_synthetic_dataset`::

    output_dir/
        videos/{split}/{label}_{index:04d}.mp4
        dataset.csv    # path,label,split (paths relative to output_dir)
        events.json    # per video path: label, split, strike times and drift phase (s)
        params.json    # generation parameters (cache key)
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import pathlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import av
import numpy as np

from avts_tf import atomic
from avts_tf.errors import UserError, first_names

# Bump when rendering changes, so cached datasets are regenerated.
FORMAT_VERSION = 2

MIN_INTERVAL_S = 0.3
MAX_INTERVAL_S = 1.2
SOUND_LENGTH_S = 0.3
ATTACK_S = 0.001
_FLOOR_FRACTION = 0.82  # floor line, as a fraction of the frame height
_RADIUS_FRACTION = 0.11  # object radius, as a fraction of the frame size
_AFTERGLOW = 0.35  # flash intensity on the frame after the contact frame

DRIFT_PERIOD_S = 12.0  # period of the world time u shared by the daylight and the hum
GAIN_LOW = 0.45  # daylight gain at u = 0
GAIN_HIGH = 1.25  # daylight gain as u reaches DRIFT_PERIOD_S
TINT_STRENGTH = 0.25  # red x (1 + s (v - 0.5)), blue x (1 - s (v - 0.5)), v = u / period
HUM_LOW_HZ = 300.0  # hum fundamental at u = 0
HUM_OCTAVES = 2.0  # octaves the hum fundamental rises over a period
HUM_AMPLITUDES = (0.025, 0.010, 0.005)  # fundamental, 2nd and 3rd harmonic
_HUM_MAX_FRACTION = 0.45  # hum partials fade out between 0.40 and 0.45 x sample rate


@dataclass(frozen=True)
class ClassSpec:
    """Look and sound of one class.

    Attributes:
        name: Class name.
        color: RGB colour of the objects, 0-255.
        shape: One of ``"circle"``, ``"square"``, ``"triangle"``, ``"diamond"``.
        f0: Fundamental frequency in Hz.
        partials: Frequency ratios of the partials relative to ``f0``.
        amplitudes: Relative amplitude of each partial.
        decay_s: Exponential decay time constant of the fundamental, in seconds.
        noise: Amplitude of the noise burst relative to the partials.
        noise_band: ``(low, high)`` band of the noise burst in Hz.
        pitch_drop: Relative initial pitch excess decaying within ~30 ms (drums).
    """

    name: str
    color: tuple[int, int, int]
    shape: str
    f0: float
    partials: tuple[float, ...]
    amplitudes: tuple[float, ...]
    decay_s: float
    noise: float = 0.0
    noise_band: tuple[float, float] = (500.0, 4000.0)
    pitch_drop: float = 0.0


_PRESETS = (
    ClassSpec("bell", (235, 200, 40), "circle", 660.0, (1.0, 2.76, 5.40), (1.0, 0.5, 0.25), 0.12),
    ClassSpec(
        "drum",
        (220, 45, 40),
        "square",
        90.0,
        (1.0, 1.59, 2.14),
        (1.0, 0.5, 0.3),
        0.09,
        noise=0.35,
        noise_band=(40.0, 600.0),
        pitch_drop=0.6,
    ),
    ClassSpec(
        "wood",
        (60, 200, 70),
        "triangle",
        380.0,
        (1.0, 3.93, 9.2),
        (1.0, 0.3, 0.1),
        0.035,
        noise=0.25,
        noise_band=(800.0, 2500.0),
    ),
    ClassSpec(
        "glass",
        (70, 150, 245),
        "diamond",
        2300.0,
        (1.0, 1.52, 2.74),
        (1.0, 0.6, 0.3),
        0.15,
        noise=0.05,
        noise_band=(3000.0, 7500.0),
    ),
    ClassSpec(
        "metal",
        (210, 60, 220),
        "circle",
        1250.0,
        (1.0, 1.41, 2.29, 3.17),
        (1.0, 0.8, 0.6, 0.4),
        0.1,
        noise=0.3,
        noise_band=(2500.0, 7000.0),
    ),
    ClassSpec(
        "gong",
        (245, 130, 30),
        "square",
        160.0,
        (1.0, 1.47, 2.09, 2.56),
        (1.0, 0.7, 0.5, 0.4),
        0.25,
    ),
    ClassSpec(
        "click",
        (235, 235, 235),
        "triangle",
        1000.0,
        (1.0,),
        (0.1,),
        0.01,
        noise=1.0,
        noise_band=(200.0, 7800.0),
    ),
    ClassSpec(
        "string",
        (130, 90, 240),
        "diamond",
        440.0,
        (1.0, 2.0, 3.0, 4.0, 5.0),
        (1.0, 0.6, 0.4, 0.3, 0.2),
        0.2,
    ),
)
_SHAPES = ("circle", "square", "triangle", "diamond")


def class_specs(num_classes: int = 4) -> list[ClassSpec]:
    """Returns the specs of ``num_classes`` classes.

    The first eight classes are hand-designed presets (``bell``, ``drum``, ``wood``,
    ``glass``, ``metal``, ``gong``, ``click``, ``string``); further classes
    (``class_8``, ...) are generated procedurally with spread hues and pitches.

    Args:
        num_classes: Number of classes, at least 1.

    Returns:
        One spec per class, in label-index order.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    specs = list(_PRESETS[:num_classes])
    for i in range(len(specs), num_classes):
        hue = (i * 0.381966) % 1.0  # golden-ratio hue spacing
        color = tuple(int(c) for c in np.round(255 * _hsv_to_rgb(hue, 0.75, 0.95)))
        f0 = float(120.0 * 2 ** ((i * 0.618034 % 1.0) * 4.5))  # 120 Hz - 2.7 kHz
        specs.append(
            ClassSpec(
                f"class_{i}",
                color,
                _SHAPES[i % 4],
                f0,
                (1.0, 2.0 + 0.37 * (i % 3), 3.9),
                (1.0, 0.5, 0.25),
                0.05 + 0.03 * (i % 5),
                noise=0.1 * (i % 3),
            )
        )
    return specs


def class_names(num_classes: int = 4) -> list[str]:
    """Returns the class names, in label-index order."""
    return [spec.name for spec in class_specs(num_classes)]


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


class RenderedVideo(NamedTuple):
    """Arrays of one rendered video.

    Attributes:
        frames: ``uint8 [T, H, W, 3]`` RGB frames, frame ``i`` shown at ``i / fps``.
        audio: ``float32 [N]`` mono samples in ``[-1, 1]``, sample ``j`` at ``j / sr``.
        strike_times: Sorted ``float64`` strike times in seconds (all objects).
        drift_phase_s: Drift phase ``phi`` in seconds: world time at ``t`` is
            ``world_time(t, drift_phase_s)``.
    """

    frames: np.ndarray
    audio: np.ndarray
    strike_times: np.ndarray
    drift_phase_s: float


def world_time(times: np.ndarray | float, drift_phase_s: float) -> np.ndarray:
    """World time ``u = (phi + t) mod DRIFT_PERIOD_S`` at video times ``t`` (seconds)."""
    return np.mod(drift_phase_s + np.asarray(times, dtype=np.float64), DRIFT_PERIOD_S)


def daylight(u: np.ndarray | float) -> np.ndarray:
    """Per-channel RGB pixel gain at world time ``u``: global gain times tint, ``[..., 3]``.

    The global gain rises linearly from ``GAIN_LOW`` to ``GAIN_HIGH`` over a period; the
    tint multiplies red by ``1 + TINT_STRENGTH (v - 0.5)`` and blue by
    ``1 - TINT_STRENGTH (v - 0.5)``, with ``v = u / DRIFT_PERIOD_S``.
    """
    v = np.asarray(u, dtype=np.float64)[..., None] / DRIFT_PERIOD_S
    gain = GAIN_LOW + (GAIN_HIGH - GAIN_LOW) * v
    tint = 1.0 + TINT_STRENGTH * (v - 0.5) * np.array([1.0, 0.0, -1.0])
    return gain * tint


def hum_frequency(u: np.ndarray | float) -> np.ndarray:
    """Hum fundamental in Hz at world time ``u``: ``HUM_LOW_HZ * 2 ** (HUM_OCTAVES v)``."""
    v = np.asarray(u, dtype=np.float64) / DRIFT_PERIOD_S
    return HUM_LOW_HZ * 2.0 ** (HUM_OCTAVES * v)


def _hum(f0: np.ndarray, phase: np.ndarray, sr: int) -> np.ndarray:
    """The ambient hum with fundamental ``f0`` (Hz) and running phase ``phase``, per sample."""
    hum = np.zeros(len(f0))
    for k, amp in enumerate(HUM_AMPLITUDES, start=1):
        # Partials near Nyquist fade out (only matters at low sample rates).
        room = (_HUM_MAX_FRACTION * sr - k * f0) / (0.05 * sr)
        hum += amp * np.clip(room, 0.0, 1.0) * np.sin(k * phase)
    return hum


@dataclass(frozen=True)
class _Object:
    x: float  # horizontal centre in pixels
    strikes: np.ndarray  # strike times including one before 0 and one after the end
    heights: np.ndarray  # bounce height (pixels) of the flight ending at strikes[k]
    color: np.ndarray
    pitch: float  # multiplicative pitch variation


def _sample_strikes(rng: np.random.Generator, duration_s: float) -> np.ndarray:
    """Strike times with one virtual strike before 0 and one after ``duration_s``."""
    first = rng.uniform(0.1, 0.8)
    times = [first - rng.uniform(MIN_INTERVAL_S, MAX_INTERVAL_S), first]
    while times[-1] <= duration_s:
        times.append(times[-1] + rng.uniform(MIN_INTERVAL_S, MAX_INTERVAL_S))
    return np.asarray(times, dtype=np.float64)


def _sample_objects(
    rng: np.random.Generator, spec: ClassSpec, duration_s: float, size: int
) -> list[_Object]:
    num_objects = int(rng.integers(1, 3))
    slots = [0.5] if num_objects == 1 else [0.28, 0.72]
    floor = _FLOOR_FRACTION * size
    radius = _RADIUS_FRACTION * size
    max_height = floor - 2.2 * radius
    objects = []
    for slot in slots:
        strikes = _sample_strikes(rng, duration_s)
        intervals = np.diff(strikes, prepend=strikes[0] - MAX_INTERVAL_S)
        heights = max_height * np.clip(intervals / MAX_INTERVAL_S, 0.25, 1.0)
        color = np.clip(np.asarray(spec.color) + rng.uniform(-12, 12, 3), 0, 255)
        x = size * (slot + rng.uniform(-0.05, 0.05))
        objects.append(_Object(x, strikes, heights, color, float(rng.uniform(0.95, 1.05))))
    return objects


def _audible_strikes(obj: _Object, num_frames: int, fps: float) -> np.ndarray:
    """Strikes with a contact frame inside the video (``0 <= t < (T - 0.5) / fps``)."""
    s = obj.strikes
    return s[(s >= 0.0) & (s < (num_frames - 0.5) / fps)]


def _trajectory(obj: _Object, times: np.ndarray, size: int) -> np.ndarray:
    """Vertical centre (pixels) of the object at ``times``: parabolic hops between strikes."""
    k = np.clip(np.searchsorted(obj.strikes, times, side="right"), 1, len(obj.strikes) - 1)
    start, end = obj.strikes[k - 1], obj.strikes[k]
    u = np.clip((times - start) / (end - start), 0.0, 1.0)
    rest = _FLOOR_FRACTION * size - _RADIUS_FRACTION * size
    return rest - obj.heights[k] * 4.0 * u * (1.0 - u)


def _flash(strikes: np.ndarray, num_frames: int, fps: float, start: int, stop: int) -> np.ndarray:
    """Flash intensity of frames ``[start, stop)``: 1 at each contact frame, ``_AFTERGLOW`` next."""
    flash = np.zeros(stop - start, dtype=np.float32)
    contact = np.round(strikes * fps).astype(np.int64)
    contact = contact[(contact >= 0) & (contact < num_frames)]
    after = contact[contact + 1 < num_frames] + 1
    after = after[(after >= start) & (after < stop)]
    contact = contact[(contact >= start) & (contact < stop)]
    np.maximum.at(flash, after - start, _AFTERGLOW)
    flash[contact - start] = 1.0
    return flash


def _shape_distance(shape: str, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Normalised distance (1 on the outline) of offsets from the shape's centre."""
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy)
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) * 1.12
    if shape == "diamond":
        return (np.abs(dx) + np.abs(dy)) * 0.8
    if shape == "triangle":  # apex up, base down
        return np.maximum(np.abs(dy), np.abs(dx) * 1.7 - dy * 0.85 - 0.15)
    raise ValueError(f"unknown shape {shape!r}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A static, muted, smoothly textured backdrop with a darker floor, float32 [H, W, 3]."""
    coarse = rng.uniform(0.0, 1.0, (6, 6, 3))
    grid = np.linspace(0.0, 5.0, size)
    i0 = np.minimum(grid.astype(np.int64), 4)
    w = (grid - i0)[:, None]
    rows = coarse[i0] * (1 - w[..., None]) + coarse[i0 + 1] * w[..., None]  # [H, 6, 3]
    tex = rows[:, i0] * (1 - w[None, :, :]) + rows[:, i0 + 1] * w[None, :, :]  # [H, W, 3]
    grey = tex.mean(axis=-1, keepdims=True)
    tint = rng.uniform(70.0, 110.0) + 40.0 * (grey - 0.5) + 18.0 * (tex - grey)
    tint = tint + rng.normal(0.0, 3.0, (size, size, 1))  # fine grain
    floor = int(round(_FLOOR_FRACTION * size))
    tint[floor:] *= 0.55
    tint[floor : floor + max(1, size // 64)] = 150.0
    return tint.astype(np.float32)


def _render_canvas(scene: Scene, start: int, stop: int) -> np.ndarray:
    """Float ``[stop - start, H, W, 3]`` frames before the daylight gain and rounding."""
    size, fps, num_frames = scene.size, scene.fps, scene.num_frames
    canvas = np.broadcast_to(scene.background, (stop - start, size, size, 3)).copy()
    times = np.arange(start, stop) / fps
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    radius = _RADIUS_FRACTION * size
    for obj in scene.objects:
        flash = _flash(_audible_strikes(obj, num_frames, fps), num_frames, fps, start, stop)
        cy = _trajectory(obj, times, size)
        contact = flash == 1.0
        cy[contact] = _FLOOR_FRACTION * size - _RADIUS_FRACTION * size
        # Squash at contact: wider and flatter, still resting on the floor.
        sx = 1.0 + 0.35 * flash
        sy = 1.0 - 0.3 * flash
        cy = cy + radius * (1.0 - sy)
        dx = (xx[None] - obj.x) / (radius * sx[:, None, None])
        dy = (yy[None] - cy[:, None, None]) / (radius * sy[:, None, None])
        dist = _shape_distance(scene.spec.shape, dx, dy)
        alpha = np.clip((1.0 - dist) * radius + 0.5, 0.0, 1.0)[..., None]
        color = obj.color + (255.0 - obj.color) * 0.6 * flash[:, None]
        canvas = canvas * (1.0 - alpha) + color[:, None, None, :] * alpha
        # Flash: a bright halo around the contact point on the floor.
        fy = _FLOOR_FRACTION * size
        halo_d = np.sqrt(((xx - obj.x) / (2.6 * radius)) ** 2 + ((yy - fy) / (1.2 * radius)) ** 2)
        halo = np.clip(1.0 - halo_d, 0.0, 1.0)[None, ..., None] * flash[:, None, None, None]
        canvas = canvas + (255.0 - canvas) * 0.85 * halo * (1.0 - alpha)
    return canvas


def _band_noise(rng: np.random.Generator, n: int, band: tuple[float, float], sr: int):
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spectrum[(freqs < band[0]) | (freqs > band[1])] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.abs(noise).max() + 1e-9)


def _strike_sound(rng: np.random.Generator, spec: ClassSpec, pitch: float, sr: int):
    """One strike: class-timbre impulse, 1 ms attack, decayed and faded out by 0.3 s."""
    n = int(round(SOUND_LENGTH_S * sr))
    t = np.arange(n) / sr
    f0 = spec.f0 * pitch * (1.0 + spec.pitch_drop * np.exp(-t / 0.03))
    phase = 2.0 * np.pi * np.cumsum(f0) / sr
    sound = np.zeros(n)
    for i, (ratio, amp) in enumerate(zip(spec.partials, spec.amplitudes, strict=True)):
        if spec.f0 * pitch * ratio >= 0.45 * sr:
            continue
        decay = spec.decay_s / (1.0 + 0.4 * i)
        sound += amp * np.sin(ratio * phase + rng.uniform(0, 2 * np.pi)) * np.exp(-t / decay)
    if spec.noise > 0:
        band = (spec.noise_band[0], min(spec.noise_band[1], 0.48 * sr))
        noise_decay = min(spec.decay_s, 0.03)
        sound += spec.noise * _band_noise(rng, n, band, sr) * np.exp(-t / noise_decay)
    fade = np.clip((n - np.arange(n)) / (0.3 * n), 0.0, 1.0)
    sound *= np.minimum(t / ATTACK_S, 1.0) * fade
    return sound / (np.abs(sound).max() + 1e-9)


class Scene(NamedTuple):
    """All random draws of one video; its frames and samples are functions of these.

    Made by :func:`draw_scene`. Frames of any range come from :func:`render_frames`,
    the audio in consecutive chunks from :func:`iter_audio`, so a video of any duration
    is rendered in bounded memory.

    Attributes:
        spec: The class's look and sound.
        objects: The bouncing objects (position, strike times, hop heights, colour, pitch).
        background: ``float32 [H, W, 3]`` static backdrop.
        num_frames: Number of frames, frame ``i`` at ``i / fps``.
        num_samples: Number of audio samples, sample ``j`` at ``j / sample_rate``.
        fps: Frame rate.
        size: Frame height and width in pixels.
        sample_rate: Audio sample rate in Hz.
        noise_level: Standard deviation of the per-sample noise floor.
        noise_state: Bit-generator state the noise floor is drawn from, sample 0 first.
        sounds: One ``float64`` strike sound per object.
        drift_phase_s: Drift phase ``phi`` in seconds (see :func:`world_time`).
        hum_phase: Initial phase of the hum's fundamental, radians.
        strike_times: Sorted ``float64`` strike times in seconds (all objects).
    """

    spec: ClassSpec
    objects: tuple[_Object, ...]
    background: np.ndarray
    num_frames: int
    num_samples: int
    fps: float
    size: int
    sample_rate: int
    noise_level: float
    noise_state: dict
    sounds: tuple[np.ndarray, ...]
    drift_phase_s: float
    hum_phase: float
    strike_times: np.ndarray


_SKIP_CHUNK = 1 << 16  # samples per draw when stepping the generator past the noise floor


def draw_scene(
    label: int,
    seed: int | Sequence[int],
    duration_s: float = 4.0,
    fps: float = 16.0,
    size: int = 64,
    sample_rate: int = 16000,
    num_classes: int = 4,
) -> Scene:
    """Makes all random draws of one video, in the order :func:`render_video` always has.

    The per-sample noise floor is not kept: the generator's state at its start is, and
    the generator is stepped past it (in bounded chunks) before the later draws, so the
    scene's memory does not grow with the duration beyond its strike times.

    Args:
        label: Class index in ``[0, num_classes)``.
        seed: Seed (or seed sequence) of this video; same seed, same scene.
        duration_s: Duration in seconds.
        fps: Frame rate.
        size: Frame height and width in pixels.
        sample_rate: Audio sample rate in Hz.
        num_classes: Number of classes (selects the class table).

    Returns:
        The scene, with ``round(duration_s * fps)`` frames and
        ``round(duration_s * sample_rate)`` samples.
    """
    spec = class_specs(num_classes)[label]
    num_frames = int(round(duration_s * fps))
    num_samples = int(round(duration_s * sample_rate))
    rng = np.random.default_rng(seed)
    objects = tuple(_sample_objects(rng, spec, duration_s, size))
    background = _background(rng, size)
    noise_level = float(rng.uniform(0.002, 0.005))
    noise_state = rng.bit_generator.state
    for start in range(0, num_samples, _SKIP_CHUNK):
        rng.normal(0.0, noise_level, min(_SKIP_CHUNK, num_samples - start))
    sounds = tuple(_strike_sound(rng, spec, obj.pitch, sample_rate) for obj in objects)
    # Drawn after the scene, so the drift leaves every other draw as it was.
    phase = float(rng.uniform(0.0, max(DRIFT_PERIOD_S - duration_s, 0.0)))
    hum_phase = float(rng.uniform(0.0, 2.0 * np.pi))
    strikes = np.sort(np.concatenate([_audible_strikes(o, num_frames, fps) for o in objects]))
    return Scene(
        spec,
        objects,
        background,
        num_frames,
        num_samples,
        float(fps),
        size,
        sample_rate,
        noise_level,
        noise_state,
        sounds,
        phase,
        hum_phase,
        strikes,
    )


def default_chunk_frames(size: int) -> int:
    """Frames per chunk when streaming: about half a million pixels (12 MB of float64 canvas)."""
    return max(1, (1 << 19) // (size * size))


def render_frames(scene: Scene, start: int, stop: int) -> np.ndarray:
    """Renders frames ``[start, stop)`` of a scene.

    Args:
        scene: From :func:`draw_scene`.
        start: First frame index, ``0 <= start <= stop``.
        stop: One past the last frame index, at most ``scene.num_frames``.

    Returns:
        ``uint8 [stop - start, H, W, 3]`` RGB frames, equal to the same rows of
        :func:`render_video`'s frames.
    """
    if not 0 <= start <= stop <= scene.num_frames:
        raise ValueError(f"frame range [{start}, {stop}) not in [0, {scene.num_frames}]")
    canvas = _render_canvas(scene, start, stop)
    light = daylight(world_time(np.arange(start, stop) / scene.fps, scene.drift_phase_s))
    return np.clip(np.round(canvas * light[:, None, None, :]), 0, 255).astype(np.uint8)


def iter_frames(scene: Scene, chunk_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yields a scene's frames in consecutive ``uint8 [t, H, W, 3]`` chunks.

    Args:
        scene: From :func:`draw_scene`.
        chunk_frames: Frames per chunk (the last may be shorter); by default
            :func:`default_chunk_frames`.
    """
    chunk = chunk_frames or default_chunk_frames(scene.size)
    for start in range(0, scene.num_frames, chunk):
        yield render_frames(scene, start, min(start + chunk, scene.num_frames))


def iter_audio(scene: Scene, chunk_samples: int = 1 << 16) -> Iterator[np.ndarray]:
    """Yields a scene's audio in consecutive ``float32 [n]`` chunks in ``[-1, 1]``.

    Every sample gets the same operations in the same order as in one whole array (the
    noise floor continues one generator, the hum's phase sum carries over), so the
    chunks concatenate to :func:`render_video`'s audio exactly, whatever their size.

    Args:
        scene: From :func:`draw_scene`.
        chunk_samples: Samples per chunk (the last may be shorter).
    """
    if chunk_samples < 1:
        raise ValueError(f"chunk_samples must be >= 1, got {chunk_samples}")
    sr, n = scene.sample_rate, scene.num_samples
    bit_generator = np.random.PCG64()
    bit_generator.state = scene.noise_state
    noise = np.random.Generator(bit_generator)
    # Per object: strike sample offsets and gains, in time order (louder after higher drops).
    strikes = []
    for obj in scene.objects:
        times = _audible_strikes(obj, scene.num_frames, scene.fps)
        heights = obj.heights[np.searchsorted(obj.strikes, times)]
        gains = 0.45 * (0.55 + 0.45 * heights / obj.heights.max())
        strikes.append((np.round(times * sr).astype(np.int64), gains))
    phase_sum = 0.0  # running sum of the hum's fundamental (Hz) over earlier samples
    for start in range(0, n, chunk_samples):
        stop = min(start + chunk_samples, n)
        audio = noise.normal(0.0, scene.noise_level, stop - start)
        for sound, (onsets, gains) in zip(scene.sounds, strikes, strict=True):
            first = np.searchsorted(onsets, start - len(sound), side="right")
            last = np.searchsorted(onsets, stop, side="left")
            for onset, gain in zip(onsets[first:last], gains[first:last], strict=True):
                lo, hi = max(onset, start), min(onset + len(sound), stop)
                audio[lo - start : hi - start] += gain * sound[lo - onset : hi - onset]
        f0 = hum_frequency(world_time(np.arange(start, stop) / sr, scene.drift_phase_s))
        sums = np.cumsum(np.concatenate([[phase_sum], f0]))[1:]
        phase_sum = sums[-1]
        phase = 2.0 * np.pi * sums / sr + scene.hum_phase
        audio = audio + _hum(f0, phase, sr)
        yield np.clip(audio, -1.0, 1.0).astype(np.float32)


def render_video(
    label: int,
    seed: int | Sequence[int],
    duration_s: float = 4.0,
    fps: float = 16.0,
    size: int = 64,
    sample_rate: int = 16000,
    num_classes: int = 4,
) -> RenderedVideo:
    """Renders one video's frames, audio, strike times and drift phase, without encoding.

    Holds the whole video in memory; :func:`draw_scene` with :func:`iter_frames` and
    :func:`iter_audio` render the same arrays in bounded chunks.

    Args:
        label: Class index in ``[0, num_classes)``.
        seed: Seed (or seed sequence) of this video; same seed, same arrays.
        duration_s: Duration in seconds.
        fps: Frame rate.
        size: Frame height and width in pixels.
        sample_rate: Audio sample rate in Hz.
        num_classes: Number of classes (selects the class table).

    Returns:
        The rendered arrays, ``round(duration_s * fps)`` frames and
        ``round(duration_s * sample_rate)`` samples.
    """
    scene = draw_scene(label, seed, duration_s, fps, size, sample_rate, num_classes)
    frames = render_frames(scene, 0, scene.num_frames)
    audio = np.concatenate([np.zeros(0, np.float32), *iter_audio(scene, max(scene.num_samples, 1))])
    return RenderedVideo(frames, audio, scene.strike_times, scene.drift_phase_s)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    audio: np.ndarray | Iterable[np.ndarray],
    fps: float,
    sample_rate: int,
    crf: int = 18,
) -> None:
    """Encodes frames and mono audio into an ``.mp4`` (H.264 yuv420p + AAC), atomically.

    Audio sample 0 and video frame 0 both start at t = 0 (the AAC priming delay is
    recorded in the container's edit list, which PyAV/FFmpeg apply on decode). Frames
    and audio may come as consecutive chunks (all frames are encoded, then all audio),
    so a long video never needs to be in memory; the file is the same however the
    arrays are cut into chunks.

    Args:
        path: Output path; written to a temporary name first, then renamed.
        frames: ``uint8 [T, H, W, 3]`` RGB frames (even height and width), or an
            iterable of such chunks, at least one.
        audio: ``float32 [N]`` mono samples in ``[-1, 1]``, or an iterable of such chunks.
        fps: Frame rate.
        sample_rate: Audio sample rate in Hz.
        crf: x264 constant rate factor.
    """
    frame_chunks = iter([frames] if isinstance(frames, np.ndarray) else frames)
    audio_chunks = [audio] if isinstance(audio, np.ndarray) else audio
    first = next(frame_chunks, None)
    if first is None:
        raise ValueError("write_video needs at least one chunk of frames")
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            video = container.add_stream(
                "libx264",
                rate=Fraction(fps).limit_denominator(1001),
                # x264's macroblock-tree lookahead makes the bitstream vary from run to
                # run on these small frames (same input, different bytes); without it the
                # output is byte-for-byte reproducible.
                options={"crf": str(crf), "preset": "veryfast", "x264-params": "mbtree=0"},
            )
            video.width, video.height = first.shape[2], first.shape[1]
            video.pix_fmt = "yuv420p"
            video.codec_context.thread_count = 1  # deterministic and polite on shared CPUs
            sound = container.add_stream("aac", rate=sample_rate, layout="mono")
            sound.bit_rate = 64000
            index = 0
            for chunk in itertools.chain([first], frame_chunks):
                for image in chunk:
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                    frame.pts = index
                    index += 1
                    container.mux(video.encode(frame))
            container.mux(video.encode(None))
            offset = 0
            for chunk in audio_chunks:
                samples = np.ascontiguousarray(chunk, dtype=np.float32)[None, :]
                if not samples.size:
                    continue
                frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = offset
                offset += samples.shape[1]
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _assign_splits(labels: np.ndarray, test_fraction: float, seed: int) -> list[str]:
    """Stratified random split with ``round(test_fraction * len(labels))`` test videos.

    Videos are shuffled within each class and ranked by their relative position in
    it, so test videos are spread over the classes in proportion to their size.
    """
    rng = np.random.default_rng([seed, 1_000_003])
    num_test = int(np.floor(test_fraction * len(labels) + 0.5))
    rank = np.zeros(len(labels))
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        rank[members] = np.arange(len(members)) / len(members)
    test = set(np.lexsort((rng.random(len(labels)), rank))[:num_test].tolist())
    return ["test" if i in test else "train" for i in range(len(labels))]


def generate_synthetic_dataset(
    output_dir: str | os.PathLike,
    num_videos: int = 64,
    seed: int = 0,
    duration_s: float = 4.0,
    fps: float = 16.0,
    size: int = 64,
    sample_rate: int = 16000,
    num_classes: int = 4,
    test_fraction: float = 0.25,
) -> pathlib.Path:
    """Writes a labelled synthetic audio-visual dataset, or reuses a cached one.

    Video ``i`` has label ``i % num_classes`` and is rendered with seed ``(seed, i)``.
    If ``output_dir`` already holds a complete dataset generated with the same
    parameters, nothing is regenerated.

    Args:
        output_dir: Folder to write into (created if needed).
        num_videos: Number of videos.
        seed: Base seed.
        duration_s: Duration of each video in seconds.
        fps: Frame rate.
        size: Frame height and width in pixels (even).
        sample_rate: Audio sample rate in Hz.
        num_classes: Number of classes.
        test_fraction: Fraction of videos (stratified by class) in split ``"test"``.

    Returns:
        Path of ``output_dir / "dataset.csv"`` (columns ``path,label,split``).
    """
    if size % 2:
        raise ValueError(f"size must be even for yuv420p, got {size}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    out = pathlib.Path(output_dir)
    csv_path, params_path = out / "dataset.csv", out / "params.json"
    params = {
        "format_version": FORMAT_VERSION,
        "num_videos": num_videos,
        "seed": seed,
        "duration_s": float(duration_s),
        "fps": float(fps),
        "size": size,
        "sample_rate": sample_rate,
        "num_classes": num_classes,
        "test_fraction": float(test_fraction),
    }
    if _is_cached(out, params):
        return csv_path
    _check_ours(out)
    csv_path.unlink(missing_ok=True)  # an interrupted run must not look complete
    out.mkdir(parents=True, exist_ok=True)
    # First, so that an interrupted run's folder is known as ours (complete: the CSV, last).
    atomic.write_text(params_path, json.dumps(params, indent=1) + "\n")
    names = class_names(num_classes)
    labels = np.arange(num_videos) % num_classes
    splits = _assign_splits(labels, test_fraction, seed)
    rows, events = [], {}
    for i, (label, split) in enumerate(zip(labels, splits, strict=True)):
        rel = f"videos/{split}/{names[label]}_{i:04d}.mp4"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        # Streamed: frames and audio rendered and encoded chunk by chunk (flat memory).
        video = draw_scene(int(label), (seed, i), duration_s, fps, size, sample_rate, num_classes)
        write_video(out / rel, iter_frames(video), iter_audio(video), fps, sample_rate)
        rows.append((rel, names[label], split))
        events[rel] = {
            "label": names[label],
            "label_index": int(label),
            "split": split,
            "strike_times": [round(float(t), 6) for t in video.strike_times],
            "drift_phase_s": round(video.drift_phase_s, 6),
        }
    _remove_stale_videos(out, {rel for rel, _, _ in rows})
    atomic.write_text(out / "events.json", json.dumps(events, indent=1) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("path", "label", "split"))
    writer.writerows(rows)
    atomic.write_text(csv_path, buffer.getvalue())
    return csv_path


def _check_ours(out: pathlib.Path) -> None:
    """Refuses to generate into a folder of other files (stale videos are deleted there).

    Raises:
        UserError: ``out`` is a file, or holds visible entries and no ``params.json`` of
            a synthetic dataset.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} is a file; give a new or empty folder as --output")
    if not out.is_dir():
        return
    try:
        ours = "num_videos" in json.loads((out / "params.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        ours = False
    others = sorted(e.name for e in out.iterdir() if not e.name.startswith("."))
    if others and not ours:
        raise UserError(
            f"output {out} holds files that are not a synthetic dataset "
            f"({first_names(others)}); "
            "give a new or empty folder as --output"
        )


def _is_cached(out: pathlib.Path, params: dict) -> bool:
    try:
        stored = json.loads((out / "params.json").read_text(encoding="utf-8"))
        with open(out / "dataset.csv", encoding="utf-8", newline="") as f:
            paths = [row["path"] for row in csv.DictReader(f)]
    except (OSError, ValueError, KeyError):
        return False
    return stored == params and all((out / p).is_file() for p in paths)


def _remove_stale_videos(out: pathlib.Path, keep: set[str]) -> None:
    """Deletes ``.mp4`` files under ``out/videos`` left by earlier generations."""
    for path in (out / "videos").rglob("*.mp4"):
        if path.relative_to(out).as_posix() not in keep:
            path.unlink()
