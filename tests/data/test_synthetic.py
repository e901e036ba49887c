import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from avts_tf.data.ingestion import synthetic
from avts_tf.errors import UserError

REPO = Path(__file__).resolve().parents[2]
SR = 16000
FPS = 16.0
SIZE = 32
DURATION = 2.0
PARAMS = dict(num_videos=4, seed=3, duration_s=DURATION, fps=FPS, size=SIZE, sample_rate=SR)
# The drift as specified (independent of the module's helpers): period, daylight, hum.
PERIOD = 12.0
HUM_WINDOW_S = 0.25


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    csv_path = synthetic.generate_synthetic_dataset(out, **PARAMS)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    events = json.loads((out / "events.json").read_text())
    return out, csv_path, rows, events


@pytest.fixture(scope="module")
def drift_dataset(tmp_path_factory):
    """Two 8 s videos at 64x64 (a bell and a drum), long enough to see the drift."""
    out = tmp_path_factory.mktemp("drift")
    synthetic.generate_synthetic_dataset(
        out, **dict(PARAMS, num_videos=2, seed=11, duration_s=8.0, size=64)
    )
    return out, json.loads((out / "events.json").read_text())


def _decode(path):
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return frames, audio[0]


def _onset(audio, t, window=128, search=0.03):
    """Sample time maximising the energy ratio after/before, within +-search of t."""
    energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    taus = np.arange(max(int((t - search) * SR), window), int((t + search) * SR))
    taus = taus[taus + window < len(energy)]
    after = energy[taus + window] - energy[taus]
    before = energy[taus] - energy[taus - window]
    return taus[np.argmax((after + 1e-6) / (before + 1e-6))] / SR


def _isolated(strikes, before=0.2, after=0.05):
    gaps_before = np.diff(strikes, prepend=-np.inf)
    gaps_after = np.diff(strikes, append=np.inf)
    return strikes[(gaps_before >= before) & (gaps_after >= after)]


def _world_time(t, phase):
    return (phase + np.asarray(t, dtype=np.float64)) % PERIOD


def _light(u):
    """Expected RGB pixel gain ``[..., 3]`` at world time ``u``: gain times tint."""
    v = np.asarray(u, dtype=np.float64) / PERIOD
    gain = 0.45 + (1.25 - 0.45) * v
    return gain[..., None] * np.stack(
        [1 + 0.25 * (v - 0.5), np.ones_like(v), 1 - 0.25 * (v - 0.5)], axis=-1
    )


def _hum_hz(u):
    return 300.0 * 2.0 ** (2.0 * np.asarray(u, dtype=np.float64) / PERIOD)


def _floor_glow(frames, drift_phase_s):
    """Mean brightness per frame of the strip just below the floor line, daylight removed.

    Each frame is divided by its daylight gain (per channel), so levels are those of the
    scene at gain 1 and a flash is judged against the other frames in the same units.
    """
    floor = int(round(0.82 * frames.shape[1]))
    light = _light(_world_time(np.arange(len(frames)) / FPS, drift_phase_s))
    strip = frames[:, floor + 1 : floor + 3].astype(np.float64)
    return (strip / light[:, None, None, :]).mean(axis=(1, 2, 3))


def _background_patch(frames):
    """Pixels ``[T, P, 3]`` no object or flash reaches: the outer two columns, upper half.

    Objects are centred at least 0.23 x size from the sides and reach less than 0.2 x size
    sideways at 64 x 64 (squashed diamond, antialiased); the flash halo stays below
    0.69 x size.
    """
    size = frames.shape[1]
    columns = [0, 1, size - 2, size - 1]
    return frames[:, : size // 2][:, :, columns].reshape(len(frames), -1, 3)


def _quiet_windows(strikes, duration, phase, step=0.05):
    """Starts of windows that no strike sound overlaps and the world time does not wrap in."""
    starts = np.arange(0.0, duration - HUM_WINDOW_S + 1e-9, step)
    free = [
        a
        for a in starts
        if not np.any((strikes < a + HUM_WINDOW_S) & (strikes + synthetic.SOUND_LENGTH_S > a))
        and _world_time(a, phase) < _world_time(a + HUM_WINDOW_S, phase)
    ]
    return np.array(free)


def _hum_peak(audio, start):
    """Frequency of the spectral peak in the hum's band in a Hann window at ``start``."""
    segment = audio[int(round(start * SR)) : int(round((start + HUM_WINDOW_S) * SR))]
    segment = segment.astype(np.float64) * np.hanning(len(segment))
    n = 1 << 18  # zero padding: 0.06 Hz bins
    spectrum = np.abs(np.fft.rfft(segment, n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    band = (freqs >= 0.8 * 300.0) & (freqs <= 1.2 * 1200.0)
    return freqs[band][np.argmax(spectrum[band])]


def test_csv_labels_and_splits(dataset):
    out, csv_path, rows, events = dataset
    assert csv_path == out / "dataset.csv"
    assert csv_path.read_text().splitlines()[0] == "path,label,split"
    names = synthetic.class_names(4)
    assert [r["label"] for r in rows] == names
    assert sorted(r["split"] for r in rows) == ["test", "train", "train", "train"]
    for r in rows:
        assert (out / r["path"]).is_file()
        assert r["path"].startswith(f"videos/{r['split']}/{r['label']}_")
        assert events[r["path"]]["label"] == r["label"]
        assert events[r["path"]]["split"] == r["split"]
        assert len(events[r["path"]]["strike_times"]) >= 1
    assert not [p for p in out.rglob(".*")], "temporary files left behind"


def test_split_is_stratified():
    labels = np.arange(64) % 4
    splits = np.array(synthetic._assign_splits(labels, 0.25, seed=0))
    for c in range(4):
        assert (splits[labels == c] == "test").sum() == 4


def test_files_decode_with_expected_streams(dataset):
    out, _, rows, _ = dataset
    for r in rows:
        with av.open(str(out / r["path"])) as container:
            (video,) = container.streams.video
            (audio,) = container.streams.audio
            assert video.codec_context.name == "h264"
            assert video.codec_context.pix_fmt == "yuv420p"
            assert audio.codec_context.name == "aac"
            assert audio.codec_context.sample_rate == SR
            assert audio.codec_context.layout.nb_channels == 1
            assert float(video.duration * video.time_base) == pytest.approx(DURATION)
            assert float(audio.duration * audio.time_base) == pytest.approx(DURATION)
            assert audio.start_time == 0 and video.start_time == 0
        frames, samples = _decode(out / r["path"])
        assert frames.shape == (int(DURATION * FPS), SIZE, SIZE, 3)
        # AAC decodes whole 1024-sample frames: at most one frame of tail padding.
        assert int(DURATION * SR) <= len(samples) < int(DURATION * SR) + 1024


def test_decoded_arrays_match_rendering(dataset):
    out, _, rows, _ = dataset
    for i, r in enumerate(rows):
        rendered = synthetic.render_video(i % 4, (PARAMS["seed"], i), DURATION, FPS, SIZE, SR)
        frames, samples = _decode(out / r["path"])
        assert np.abs(frames.astype(np.float32) - rendered.frames).mean() < 6.0
        n = len(rendered.audio)
        # Zero lag: the decoded waveform lines up sample-exactly with the rendered one.
        xcorr = [
            np.dot(rendered.audio[50:-50], samples[50 + lag : n - 50 + lag])
            for lag in range(-40, 41)
        ]
        assert int(np.argmax(xcorr)) - 40 == 0


def test_audio_onsets_at_strike_times_after_decode(dataset):
    out, _, rows, events = dataset
    checked = 0
    for r in rows:
        _, samples = _decode(out / r["path"])
        for t in _isolated(np.array(events[r["path"]]["strike_times"])):
            assert abs(_onset(samples, t) - t) < 0.010, (r["path"], t)
            checked += 1
    assert checked >= 4


def test_strikes_are_visible_at_contact_frames(dataset):
    out, _, rows, events = dataset
    for r in rows:
        frames, _ = _decode(out / r["path"])
        glow = _floor_glow(frames, events[r["path"]]["drift_phase_s"])
        contact = np.round(np.array(events[r["path"]]["strike_times"]) * FPS).astype(int)
        quiet = np.setdiff1d(np.arange(len(frames)), np.concatenate([contact, contact + 1]))
        assert glow[contact].min() > glow[quiet].max() + 15.0, r["path"]


@pytest.mark.parametrize(("label", "duration"), [(0, 4.0), (3, 4.0), (2, 13.0)])
def test_daylight_gain_is_exact(label, duration):
    v = synthetic.render_video(label, (11, label), duration, FPS, 64, SR)
    assert 0.0 <= v.drift_phase_s <= max(PERIOD - duration, 0.0)
    light = _light(_world_time(np.arange(len(v.frames)) / FPS, v.drift_phase_s))  # [T, 3]
    patch = _background_patch(v.frames).astype(np.float64)
    # Against the brightest frame, so the reference's rounding error shrinks, not grows.
    ref = int(np.argmax(light[:, 1]))
    expected = patch[ref][None] * (light / light[ref])[:, None, :]
    np.testing.assert_allclose(patch, expected, atol=1.5, rtol=0)
    green = patch[..., 1].mean(axis=1)
    if duration <= PERIOD:  # No wrap: brighter frame after frame.
        assert np.all(np.diff(green) > 0)
        assert green[-1] / green[0] > 1.1
    else:  # Dark again at the wrap (t = 12 s), brightening after it.
        wrap = int(PERIOD * FPS)
        assert v.drift_phase_s == 0.0
        assert green[wrap] < 0.4 * green[wrap - 1]
        assert np.all(np.diff(green[:wrap]) > 0) and np.all(np.diff(green[wrap:]) > 0)


@pytest.mark.parametrize(("label", "index", "duration"), [(0, 0, 4.0), (1, 1, 4.0), (3, 4, 13.0)])
def test_hum_follows_world_time(label, index, duration):
    v = synthetic.render_video(label, (11, index), duration, FPS, 64, SR)
    starts = _quiet_windows(v.strike_times, duration, v.drift_phase_s)
    assert len(starts) >= 5
    centres = starts + HUM_WINDOW_S / 2
    measured = np.array([_hum_peak(v.audio, a) for a in starts])
    np.testing.assert_allclose(measured, _hum_hz(_world_time(centres, v.drift_phase_s)), rtol=0.01)
    if duration > PERIOD:  # Back down after the wrap.
        assert centres.max() > PERIOD
        assert measured[centres > PERIOD].max() < 1.2 * 300.0


def test_events_hold_drift_phase(dataset, drift_dataset):
    out, _, rows, events = dataset
    for i, r in enumerate(rows):
        rendered = synthetic.render_video(i % 4, (PARAMS["seed"], i), DURATION, FPS, SIZE, SR)
        assert events[r["path"]]["drift_phase_s"] == round(rendered.drift_phase_s, 6)
    for (out, *_, events), duration in [(dataset, DURATION), (drift_dataset, 8.0)]:
        assert len(events) == len(list(out.rglob("*.mp4")))
        for path, event in events.items():
            assert 0.0 <= event["drift_phase_s"] <= PERIOD - duration, path


def test_drift_survives_encoding(drift_dataset):
    out, events = drift_dataset
    for path, event in events.items():
        frames, audio = _decode(out / path)
        phase = event["drift_phase_s"]
        times = np.arange(len(frames)) / FPS
        # Background brightness (green: no tint) rises as the daylight gain.
        green = _background_patch(frames)[..., 1].astype(np.float64).mean(axis=1)
        slope, intercept = np.polyfit(times, green, 1)
        expected = (1.25 - 0.45) / PERIOD / (0.45 + (1.25 - 0.45) * phase / PERIOD)
        assert slope / intercept == pytest.approx(expected, rel=0.15), path
        ranks = np.argsort(np.argsort(green))
        assert np.corrcoef(ranks, np.arange(len(green)))[0, 1] > 0.99, path  # Spearman
        # The hum's pitch at the start and at the end of the video.
        starts = _quiet_windows(np.array(event["strike_times"]), 8.0, phase)
        for start in (starts[0], starts[-1]):
            expected_hz = _hum_hz(_world_time(start + HUM_WINDOW_S / 2, phase))
            assert _hum_peak(audio, start) == pytest.approx(expected_hz, rel=0.02), path
        assert starts[0] < 0.5 and starts[-1] > 7.0, (path, starts)


def test_render_is_deterministic_by_seed():
    a = synthetic.render_video(1, (7, 0), DURATION, FPS, SIZE, SR)
    b = synthetic.render_video(1, (7, 0), DURATION, FPS, SIZE, SR)
    c = synthetic.render_video(1, (8, 0), DURATION, FPS, SIZE, SR)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.frames.dtype == np.uint8 and a.audio.dtype == np.float32
    assert a.frames.shape == (32, SIZE, SIZE, 3) and a.audio.shape == (32000,)
    assert not np.array_equal(a.strike_times, c.strike_times)
    assert not np.array_equal(a.audio, c.audio)


def test_strike_statistics():
    strikes = [synthetic.render_video(0, (0, i), 4.0, FPS, SIZE, SR).strike_times for i in range(8)]
    for s in strikes:
        assert np.all((s >= 0) & (s < 4.0))
    # Different windows of a video have different strike patterns.
    for s in strikes:
        first = np.sort(s[s < 2.0])
        second = np.sort(s[s >= 2.0] - 2.0)
        assert len(first) != len(second) or not np.allclose(first, second, atol=0.05)


def test_dataset_generation_is_deterministic(dataset, tmp_path):
    out, _, rows, events = dataset
    csv_path = synthetic.generate_synthetic_dataset(tmp_path, **PARAMS)
    assert json.loads((tmp_path / "events.json").read_text()) == events
    assert csv_path.read_text() == (out / "dataset.csv").read_text()
    for r in rows:
        assert (tmp_path / r["path"]).read_bytes() == (out / r["path"]).read_bytes()


def test_classes_are_distinguishable():
    colors, centroids = [], []
    for label in range(4):
        v = synthetic.render_video(label, (5, label), DURATION, FPS, SIZE, SR)
        frames = v.frames.astype(np.float32)
        moving = np.abs(frames - np.median(frames, axis=0)).sum(-1) > 90
        colors.append(frames[moving].mean(axis=0))
        power = np.abs(np.fft.rfft(v.audio)) ** 2
        freqs = np.fft.rfftfreq(len(v.audio), 1 / SR)
        centroids.append((power * freqs).sum() / power.sum())
    for i in range(4):
        for j in range(i):
            assert np.linalg.norm(colors[i] - colors[j]) > 40.0, (i, j, colors)
            ratio = max(centroids[i], centroids[j]) / min(centroids[i], centroids[j])
            assert ratio > 1.5, (i, j, centroids)


def test_cached_call_does_not_regenerate(tmp_path):
    params = dict(PARAMS, num_videos=2, duration_s=1.0)
    csv_path = synthetic.generate_synthetic_dataset(tmp_path, **params)
    videos = sorted(tmp_path.rglob("*.mp4"))
    stamps = [p.stat().st_mtime_ns for p in [csv_path, *videos]]
    os.utime(csv_path, ns=(1, 1))  # any rewrite would reset this
    assert synthetic.generate_synthetic_dataset(tmp_path, **params) == csv_path
    assert csv_path.stat().st_mtime_ns == 1
    assert [p.stat().st_mtime_ns for p in videos] == stamps[1:]
    # Different parameters regenerate, and stale videos are removed.
    synthetic.generate_synthetic_dataset(tmp_path, **dict(params, num_videos=1))
    assert csv_path.stat().st_mtime_ns != 1
    assert len(list(tmp_path.rglob("*.mp4"))) == 1


def test_a_folder_of_other_files_is_refused_and_left_as_it_was(tmp_path):
    """``--output`` naming the user's folder: refused, nothing written or deleted.

    A regeneration writes its CSV over ``dataset.csv`` and deletes every
    ``videos/**/*.mp4`` it did not write (stale videos of an earlier generation), so a
    folder it did not generate is refused rather than overwritten and emptied.
    """
    mine = tmp_path / "mine"
    (mine / "videos" / "trip").mkdir(parents=True)
    (mine / "videos" / "trip" / "beach.mp4").write_bytes(b"my video")
    (mine / "dataset.csv").write_text("my list")
    with pytest.raises(UserError) as err:
        synthetic.generate_synthetic_dataset(mine, **dict(PARAMS, num_videos=2, duration_s=1.0))
    assert str(err.value) == (
        f"output {mine} holds files that are not a synthetic dataset "
        "(dataset.csv, videos); give a new or empty folder as --output"
    )
    assert (mine / "videos" / "trip" / "beach.mp4").read_bytes() == b"my video"
    assert (mine / "dataset.csv").read_text() == "my list"
    assert sorted(p.name for p in mine.rglob("*")) == ["beach.mp4", "dataset.csv", "trip", "videos"]
    # An interrupted generation (videos, no CSV yet) is ours: a re-run finishes it.
    ours = tmp_path / "ours"
    params = dict(PARAMS, num_videos=2, duration_s=1.0)
    csv_path = synthetic.generate_synthetic_dataset(ours, **params)
    csv_path.unlink()
    assert synthetic.generate_synthetic_dataset(ours, **params) == csv_path


def test_cli(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "make_synthetic.py"),
            "--output",
            str(tmp_path),
            "--num_videos",
            "2",
            "--duration_s",
            "1",
            "--size",
            "32",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "dataset.csv")
    assert len(list(tmp_path.rglob("*.mp4"))) == 2
    odd = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "make_synthetic.py"),
            "--output",
            str(tmp_path / "odd"),
            "--size",
            "33",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert odd.returncode == 2 and odd.stderr.strip().splitlines()[-1] == (
        "error: flag --size=33: must be even (frames are encoded as yuv420p), e.g. --size=64; "
        "see --helpshort for the flags and their valid values"
    )
    assert not (tmp_path / "odd").exists()


BUILD = """
import sys
from avts_tf.data.ingestion.datasets import synthetic_dataset
print("imported", flush=True)
print(synthetic_dataset(cache_dir=sys.argv[1], num_videos=4, duration_s=1.0, size=32))
"""


def test_a_first_use_waits_for_another_process_building_the_same_dataset(tmp_path):
    """Two runs started together (or the workers of one run) need the built-in dataset at
    once: the second waits for the first's build lock before it builds."""
    import fcntl
    import time

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    first = subprocess.run(  # Learns the cache folder's name (a hash of the arguments).
        [sys.executable, "-c", BUILD, str(tmp_path / "a")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    root = Path(first.stdout.strip().splitlines()[-1]).parent
    cache = tmp_path / "b" / root.name
    cache.mkdir(parents=True)
    with open(cache / ".building.lock", "w") as lock:  # Another process is building it.
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiting = subprocess.Popen(
            [sys.executable, "-c", BUILD, str(tmp_path / "b")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert waiting.stdout.readline().strip() == "imported"
        time.sleep(3)  # Unlocked, 4 one-second videos are made and their ingestion begun.
        assert waiting.poll() is None and not (cache / "prepared").exists()
    out, err = waiting.communicate(timeout=300)  # Lock released: it builds and returns.
    assert waiting.returncode == 0, err[-2000:]
    assert out.strip().splitlines()[-1] == str(cache / "prepared")
