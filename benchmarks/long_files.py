"""Long footage: ingestion memory and reading speed against short clips, in one run.

    python benchmarks/long_files.py [--long_s 1200] [--short_s 60] [--clips 12] [--rounds 3]

Generates synthetic videos at 25 fps / 128 px with the streaming generator: one of
``--short_s`` seconds, one of ``--long_s`` seconds, and ``--clips`` 10-second clips. Then:

* **Ingestion memory**: each long/short video is ingested by ``avts-prepare`` (one worker,
  25 fps, short side 128, the default 30 s records) in a fresh process; its peak RSS (and
  its worker's) is read from the kernel (``wait4``). Flat memory: the long file's peak is
  within 10% of the short one's.
* **Reading speed**: clips/s of ``data.train_dataset`` (cache off, default shuffle buffer,
  8 frames, 112 px crop) over the long file's records against the 10-second clips', in
  interleaved rounds in fresh processes (min-max over rounds), with each reader's peak RSS.
* **Training speed**: clips/s of the quickstart towers' train step (MC3 / VGG, width 16) on
  the same clips fed by that reader.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FPS, SIZE = 25.0, 128
_READ = r"""
import sys, time, resource, os
sys.path.insert(0, sys.argv[1])
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
from avts_tf.data import pipeline
from avts_tf.data.audio_features import LogMelSpec
spec = pipeline.ClipSpec(num_frames=8, crop_size=112, log_mel=LogMelSpec(mel_bins=40))
batches = iter(pipeline.train_dataset(sys.argv[2], 16, spec=spec, cache_records=False))
for _ in range(5):
    next(batches)
steps = int(sys.argv[3])
start = time.perf_counter()
for _ in range(steps):
    next(batches)
rate = steps * 16 / (time.perf_counter() - start)
print(rate, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


_TRAIN = r"""
import sys, time, os
sys.path.insert(0, sys.argv[1])
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
import avts_tf.backbones
from avts_tf.data import pipeline
from avts_tf.data.audio_features import LogMelSpec
from avts_tf.models import AVTSModel
from avts_tf.tasks.sync.objectives import ContrastiveSync
from avts_tf.registry import BACKBONES
spec = pipeline.ClipSpec(num_frames=8, crop_size=112, log_mel=LogMelSpec(mel_bins=40))
fps = 25.0
video = BACKBONES.build("mc3_18", input_shape=spec.video_shape(), width=16, depths=(1, 1, 1, 1),
                        embedding_dim=64)
audio = BACKBONES.build("avts_audio_vgg", input_shape=spec.audio_shape(fps), width=16,
                        depths=(1, 1, 1, 1), embedding_dim=64)
model = AVTSModel(video, audio, ContrastiveSync())
model.compile(optimizer=keras.optimizers.Adam(1e-3))
data = pipeline.train_dataset(sys.argv[2], 16, spec=spec, cache_records=False)
model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
steps = int(sys.argv[3])
start = time.perf_counter()
model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
print(steps * 16 / (time.perf_counter() - start))
"""


def train_rate(data_dir: Path, steps: int) -> float:
    """Clips/s of the quickstart towers' train step (8 x 112 px clips) fed by the reader."""
    result = subprocess.run(
        [sys.executable, "-c", _TRAIN, str(REPO), str(data_dir), str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def generate(out: Path, duration_s: float, count: int = 1) -> Path:
    """``count`` synthetic videos of ``duration_s`` seconds in ``out`` (streamed)."""
    subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "make_synthetic.py"),
            f"--output={out}",
            f"--num_videos={count}",
            f"--duration_s={duration_s}",
            f"--fps={FPS}",
            f"--size={SIZE}",
            "--test_fraction=0",
        ],
        check=True,
        capture_output=True,
    )
    return out


def ingest(source: Path, out: Path, *flags: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``avts-prepare`` on ``source`` in a fresh process.

    The peak is the larger of the main process's and its largest child's (a worker's).
    """
    code = (
        "import sys, resource; sys.argv = sys.argv[1:];"
        "from avts_tf.cli.prepare import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))"
    )
    command = [
        sys.executable,
        "-c",
        code,
        "avts-prepare",
        f"--input={source}",
        f"--output={out}",
        f"--fps={FPS}",
        f"--short_side={SIZE}",
        "--test_fraction=0",
        *flags,
    ]
    start = time.perf_counter()
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return time.perf_counter() - start, int(result.stdout.strip().splitlines()[-1]) / 1024


def read_rate(data_dir: Path, steps: int) -> tuple[float, float]:
    """Clips/s and peak RSS (MB) of the train reader over ``data_dir`` in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", _READ, str(REPO), str(data_dir), str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    rate, rss = result.stdout.strip().splitlines()[-1].split()
    return float(rate), int(rss) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long_s", type=float, default=1200.0)
    parser.add_argument("--short_s", type=float, default=60.0)
    parser.add_argument("--clips", type=int, default=12, help="10-second clips to compare.")
    parser.add_argument("--steps", type=int, default=40, help="Timed reader batches of 16.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work_dir", default=None)
    parser.add_argument(
        "--train_steps",
        type=int,
        default=15,
        help="Timed train steps per round (0: skip the training rows).",
    )
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="avts_long_"))
    sources = {
        f"{args.short_s:g} s file": generate(work / "short", args.short_s),
        f"{args.long_s:g} s file": generate(work / "long", args.long_s),
        f"{args.clips} x 10 s clips": generate(work / "clips", 10.0, args.clips),
    }
    print(f"ingestion (1 worker, {FPS:g} fps, {SIZE} px, 30 s records), fresh process each:")
    prepared = {}
    for name, source in sources.items():
        prepared[name] = work / f"prepared_{source.name}"
        wall, rss = ingest(source, prepared[name])
        print(f"  {name:>18}: peak RSS {rss:7.1f} MB, {wall:6.1f} s", flush=True)
    rates: dict[str, list[float]] = {k: [] for k in prepared}
    peaks: dict[str, list[float]] = {k: [] for k in prepared}
    for _ in range(args.rounds):  # interleaved
        for name, data in prepared.items():
            rate, rss = read_rate(data, args.steps)
            rates[name].append(rate)
            peaks[name].append(rss)
    trained: dict[str, list[float]] = {k: [] for k in prepared}
    for _ in range(args.rounds if args.train_steps else 0):
        for name, data in prepared.items():
            trained[name].append(train_rate(data, args.train_steps))
    print(
        "reading (train_dataset, 8 frames, 112 px crop, batch 16, cache off), clips/s "
        f"over {args.rounds} interleaved rounds:"
    )
    for name in prepared:
        print(
            f"  {name:>18}: {min(rates[name]):7.1f}-{max(rates[name]):7.1f} clips/s, "
            f"peak RSS {max(peaks[name]):7.1f} MB"
        )
    if args.train_steps:
        print(
            "training (quickstart MC3 / VGG towers, same clips), clips/s over "
            f"{args.rounds} interleaved rounds:"
        )
        for name in prepared:
            print(f"  {name:>18}: {min(trained[name]):7.1f}-{max(trained[name]):7.1f} clips/s")


if __name__ == "__main__":
    main()
