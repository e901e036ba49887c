"""Input pipeline throughput: the tf.data reader over shards against per-clip PyAV decoding.

    python benchmarks/input_pipeline.py [--videos 64] [--clips 256] [--memory]

Prints one table, all rows measured in this process on the same synthetic videos and the
same clip shape (8 frames at 8 fps, 32x32 crop, 1 s of 16 kHz audio as a 40-bin log-mel):

* reader: ``avts_tf.data.pipeline.train_dataset`` over the prepared TFRecord shards.
* per-clip PyAV: what PyTorch projects usually do in ``__getitem__``: open the video file,
  seek to the clip, decode and resample its frames and its audio, resize, crop, log-mel.
* train step: clips/s the quickstart train step consumes (on cached batches), i.e. the
  rate the reader must beat.

With ``--memory`` it also reports the peak RSS of ``prepare_dataset`` for 20 and 200 files,
each in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import av  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from avts_tf.data import pipeline  # noqa: E402
from avts_tf.data.audio_features import LogMelSpec, log_mel_spectrogram  # noqa: E402
from avts_tf.data.ingestion import prepare, synthetic  # noqa: E402
from avts_tf.data.manifest import IngestConfig  # noqa: E402

SPEC = pipeline.ClipSpec(
    num_frames=8, crop_size=32, log_mel=LogMelSpec(mel_bins=40, window_s=0.04, hop_s=0.02)
)
FPS, SHORT_SIDE, RATE = 8.0, 40, 16000


def decode_clip_with_pyav(path: str, start_s: float, rng: np.random.Generator) -> dict:
    """One clip straight from the container, the way a per-item PyTorch loader does it."""
    end_s = start_s + SPEC.num_frames / FPS
    frames, audio = [], []
    with av.open(path) as container:
        video = container.streams.video[0]
        container.seek(int(start_s / video.time_base), stream=video, backward=True)
        wanted = [start_s + i / FPS for i in range(SPEC.num_frames)]
        last = None
        for frame in container.decode(video):
            t = float(frame.pts * video.time_base)
            while wanted and t > wanted[0] + 1e-6:
                frames.append(last if last is not None else frame)
                wanted.pop(0)
            last = frame
            if not wanted:
                break
        frames += [last] * len(wanted)
        height, width = frames[0].height, frames[0].width
        scale = SHORT_SIDE / min(height, width)
        size = (int(round(width * scale)), int(round(height * scale)))
        pixels = np.stack([f.reformat(*size, format="rgb24").to_ndarray() for f in frames])

        stream = container.streams.audio[0]
        container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        first_sample = None
        for frame in container.decode(stream):
            if first_sample is None:
                first_sample = int(round(float(frame.pts * stream.time_base) * RATE))
            for out in resampler.resample(frame):
                audio.append(out.to_ndarray()[0])
            if float(frame.pts * stream.time_base) > end_s:
                break
    samples = np.concatenate(audio).astype(np.float32) / 32768.0
    offset = int(round(start_s * RATE)) - (first_sample or 0)
    window = int(round(SPEC.window_seconds(FPS) * RATE))
    samples = np.pad(samples[max(offset, 0) :], (0, window))[:window]
    top = rng.integers(0, pixels.shape[1] - SPEC.crop_size + 1)
    left = rng.integers(0, pixels.shape[2] - SPEC.crop_size + 1)
    crop = pixels[:, top : top + SPEC.crop_size, left : left + SPEC.crop_size]
    return {
        "video": crop.astype(np.float32) / 255.0,
        "audio": log_mel_spectrogram(samples, SPEC.log_mel).numpy(),
    }


def reader_rate(data_dir: str, clips: int, batch: int = 16) -> float:
    dataset = pipeline.train_dataset(data_dir, batch, spec=SPEC, cache_records=False)
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(clips // batch):
        next(iterator)
    return (clips // batch) * batch / (time.perf_counter() - start)


def pyav_rate(videos: list[str], clips: int, duration_s: float) -> float:
    rng = np.random.default_rng(0)
    decode_clip_with_pyav(videos[0], 0.0, rng)
    start = time.perf_counter()
    for i in range(clips):
        begin = rng.integers(0, int((duration_s - 1.0) * FPS)) / FPS
        decode_clip_with_pyav(videos[i % len(videos)], float(begin), rng)
    return clips / (time.perf_counter() - start)


def train_step_rate(data_dir: str, steps: int = 30, batch: int = 16) -> float:
    import keras

    import avts_tf.backbones  # noqa: F401
    from avts_tf.models import AVTSModel
    from avts_tf.registry import BACKBONES
    from avts_tf.tasks.sync.objectives import ContrastiveSync

    video = BACKBONES.build(
        "mc3_18", input_shape=SPEC.video_shape(), width=16, depths=(1, 1, 1, 1), embedding_dim=64
    )
    audio = BACKBONES.build(
        "avts_audio_vgg",
        input_shape=SPEC.audio_shape(FPS),
        width=16,
        depths=(1, 1, 1, 1),
        embedding_dim=64,
    )
    model = AVTSModel(video, audio, ContrastiveSync())
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    cached = pipeline.train_dataset(data_dir, batch, spec=SPEC).take(1).cache().repeat()
    model.fit(cached, steps_per_epoch=3, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(cached, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def prepare_peak_rss_mb(csv_path: Path, count: int, out: Path) -> float:
    """Peak RSS (MB) of a fresh process ingesting the first ``count`` rows of the CSV."""
    rows = csv_path.read_text().splitlines()
    subset = out / f"subset_{count}.csv"
    subset.write_text("\n".join(rows[: count + 1]) + "\n")
    code = (
        "import sys, resource; sys.path.insert(0, sys.argv[1]);"
        "from avts_tf.data.ingestion import prepare;"
        "prepare.prepare_dataset(sys.argv[2], sys.argv[3], "
        "options=prepare.RunOptions(progress=False));"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    # Paths in the subset CSV are relative to the generated folder.
    subset_in_place = csv_path.parent / subset.name
    subset_in_place.write_text(subset.read_text())
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(Path(__file__).resolve().parents[1]),
            str(subset_in_place),
            str(out / f"prepared_{count}"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--memory", action="store_true", help="Also measure prepare_data RSS.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        count = max(args.videos, 200 if args.memory else 0)
        csv_path = synthetic.generate_synthetic_dataset(
            root / "videos",
            num_videos=count,
            duration_s=4.0,
            fps=16.0,
            size=64,
            test_fraction=0.0,
        )
        subset = root / "videos" / "bench.csv"
        subset.write_text("\n".join(csv_path.read_text().splitlines()[: args.videos + 1]) + "\n")
        data_dir = root / "prepared"
        prepare.prepare_dataset(
            subset,
            data_dir,
            IngestConfig(fps=FPS, short_side=SHORT_SIDE),
            options=prepare.RunOptions(progress=False),
        )
        videos = sorted(str(p) for p in (root / "videos" / "videos").rglob("*.mp4"))[: args.videos]

        rows = []
        reader = reader_rate(str(data_dir), args.clips)
        per_clip = pyav_rate(videos, max(args.clips // 4, 32), 4.0)
        step = train_step_rate(str(data_dir))
        rows.append(("tf.data reader over shards", reader, 1.0))
        rows.append(("per-clip PyAV decode", per_clip, reader / per_clip))
        rows.append(("quickstart train step (consumer)", step, reader / step))

        print(
            f"\nclip: {SPEC.video_shape()} video + {SPEC.audio_shape(FPS)} log-mel, "
            f"{args.threads} threads, {args.videos} videos"
        )
        print(f"{'path':<36}{'clips/s':>10}{'reader / this':>16}")
        for name, rate, ratio in rows:
            print(f"{name:<36}{rate:>10.1f}{ratio:>15.1f}x")

        if args.memory:
            print(f"\n{'prepare_data files':<20}{'peak RSS (MB)':>15}")
            for n in (20, 200):
                print(f"{n:<20}{prepare_peak_rss_mb(csv_path, n, root):>15.0f}")


if __name__ == "__main__":
    main()
