"""Streamed generation of the synthetic world: chunked rendering equals the whole arrays,
and generating a long video takes no more memory than a short one."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest

from avts_tf.data.ingestion import synthetic

REPO = Path(__file__).resolve().parents[2]

# (label, seed, duration_s, fps, size, sample_rate): two objects each; the second is longer
# than the drift period (the world time wraps) with frame and sample rates that are not
# powers of two.
CASES = [(1, (21, 1), 3.0, 16.0, 32, 16000), (1, (21, 9), 13.0, 10.0, 32, 8000)]


@pytest.mark.parametrize("case", CASES)
def test_chunked_rendering_equals_whole_arrays(case):
    whole = synthetic.render_video(*case)
    scene = synthetic.draw_scene(*case)
    assert len(scene.objects) == 2
    np.testing.assert_array_equal(scene.strike_times, whole.strike_times)
    assert scene.drift_phase_s == whole.drift_phase_s
    num_frames, num_samples = len(whole.frames), len(whole.audio)
    # 7 and 13 do not divide the frame counts (48, 130); one chunk; one frame a chunk.
    for chunk in (1, 7, 13, num_frames, None):
        chunks = list(synthetic.iter_frames(scene, chunk))
        if chunk:
            assert [len(c) for c in chunks[:-1]] == [chunk] * (len(chunks) - 1)
        np.testing.assert_array_equal(np.concatenate(chunks), whole.frames, err_msg=str(chunk))
    np.testing.assert_array_equal(synthetic.render_frames(scene, 5, 17), whole.frames[5:17])
    # 999 and 4097 do not divide the sample counts; strikes straddle chunk boundaries.
    for chunk in (999, 4097, num_samples, 10 * num_samples):
        audio = np.concatenate(list(synthetic.iter_audio(scene, chunk)))
        assert audio.dtype == np.float32
        np.testing.assert_array_equal(audio, whole.audio, err_msg=str(chunk))


def test_streamed_file_equals_file_from_whole_arrays(tmp_path):
    case = CASES[0]
    whole = synthetic.render_video(*case)
    fps, sample_rate = case[3], case[5]
    synthetic.write_video(tmp_path / "whole.mp4", whole.frames, whole.audio, fps, sample_rate)
    scene = synthetic.draw_scene(*case)
    synthetic.write_video(
        tmp_path / "streamed.mp4",
        synthetic.iter_frames(scene, 7),
        synthetic.iter_audio(scene, 4097),
        fps,
        sample_rate,
    )
    assert (tmp_path / "streamed.mp4").read_bytes() == (tmp_path / "whole.mp4").read_bytes()
    with pytest.raises(ValueError, match="at least one chunk"):
        synthetic.write_video(tmp_path / "empty.mp4", iter([]), whole.audio, fps, sample_rate)
    assert not list(tmp_path.glob(".*"))


_CHILD = textwrap.dedent("""
    import json, resource, sys
    from avts_tf.data.ingestion import synthetic

    synthetic.generate_synthetic_dataset(sys.argv[1], num_videos=1, seed=0,
                                         duration_s=float(sys.argv[2]), fps=25.0, size=128)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    try:
        with open("/proc/self/status") as f:  # VmHWM: the same peak, where available
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        peak //= 1024 if sys.platform == "darwin" else 1  # bytes there
    print(json.dumps({"peak_kib": peak}))
""")


def _generate(out, duration_s):
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(out), str(duration_s)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_kib"]


@pytest.mark.slow
def test_generation_memory_is_flat_in_duration(tmp_path):
    # 1 and 4 minutes at 25 fps, 128 x 128: rendered whole, the longer would hold 295 MB
    # of uint8 frames and 2.4 GB of float64 canvas more than the shorter.
    peaks = {d: _generate(tmp_path / str(d), d) for d in (60, 240)}
    assert peaks[240] <= 1.10 * peaks[60] + 5 * 1024, peaks
    with av.open(str(next((tmp_path / "240").rglob("*.mp4")))) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert float(video.duration * video.time_base) == pytest.approx(240.0)
        assert float(audio.duration * audio.time_base) == pytest.approx(240.0)
        assert (video.width, video.height) == (128, 128)
