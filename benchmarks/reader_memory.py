"""Reader memory at corpus scale: peak RSS and clips/s on a prepared set and on 10x that set.

    python benchmarks/reader_memory.py [--videos 128] [--copies 10] [--rounds 3]
        [--batches 50] [--cache_dir /tmp/avts_reader_memory]

Builds (once, reused from ``--cache_dir``) a prepared set of synthetic videos stored at
``--short_side`` 128 (4 s at 8 fps, 16 kHz audio, ``--shards`` shards per split), and a
set ``--copies`` times larger: the same records re-serialized with distinct ids
(``copyK/<id>``) into ``copies x shards`` real TFRecord shards, with a ``Manifest``
listing every record, so the reader sees a genuinely larger dataset. Nothing goes to git.

Each measurement runs in a fresh subprocess (clean RSS) with the quickstart clip spec
(``gin/quickstart.gin``: 8 frames, 32x32 crop, 1 s of audio as a 40-bin log-mel) and the
default task (aligned clips). Configurations, each on the small and the large set,
interleaved (small, large, small, large, ...) over ``--rounds`` rounds:

* ``train stream``: ``pipeline.train_dataset`` at its defaults (streams, no cache):
  ``--warmup`` batches, then ``--batches`` timed batches of ``--batch_size``.
* ``train cache``: the same with ``cache_records=True``, for contrast: the cache holds
  every record read, so memory grows with the set (the default run reads more records
  than the large set holds).
* ``eval pass``: one full pass of ``pipeline.eval_dataset`` over ``--eval_split`` at its
  defaults (``shuffle_buffer=256`` records, 4 clips per video).
* ``eval pass b32``: the same with ``shuffle_buffer=32``, smaller than the small set.

Columns: peak RSS of the child (``ru_maxrss``, MB); "reader MB", that peak minus the
child's RSS once TensorFlow is loaded and the dataset built (it includes about 170 MB
that the first batches allocate in every configuration, even on the smallest set);
clips/s; each as min-max over the rounds; then the ratio large / small of the medians.
Eval clips/s of the small set's short pass (384 clips) includes the fixed start of each
of its 4 clip passes (no decoding until the shuffle buffer is full), so only the train
rows compare throughput.

Measurements: ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CONFIGS = {
    "train stream": {"reader": "train", "cache_records": False},
    "train cache": {"reader": "train", "cache_records": True},
    "eval pass": {"reader": "eval"},
    "eval pass b32": {"reader": "eval", "shuffle_buffer": 32},
}
FPS, DURATION_S, VIDEO_FPS = 8.0, 4.0, 16.0


# -- the two prepared sets ------------------------------------------------------------


def build_small(root: Path, videos: int, short_side: int, shards: int) -> Path:
    """Synthetic videos ingested at ``short_side`` into ``shards`` shards per split."""
    from avts_tf.data import manifest
    from avts_tf.data.ingestion import prepare, synthetic
    from avts_tf.data.manifest import IngestConfig

    prepared = root / "small"
    if manifest.exists(prepared):
        return prepared
    csv_path = synthetic.generate_synthetic_dataset(
        root / "videos",
        num_videos=videos,
        duration_s=DURATION_S,
        fps=VIDEO_FPS,
        size=short_side,
    )
    prepare.prepare_dataset(
        csv_path,
        prepared,
        IngestConfig(fps=FPS, short_side=short_side, num_shards=shards),
        workers=2,
        options=prepare.RunOptions(progress=False),
    )
    return prepared


def build_large(small: Path, root: Path, copies: int) -> Path:
    """``copies`` re-serialized copies of every shard of ``small``, with distinct ids."""
    import tensorflow as tf

    from avts_tf.data.ingestion import prepare
    from avts_tf.data.manifest import Manifest, Shard, SplitInfo, exists

    large = root / f"large_x{copies}"
    if exists(large):
        return large
    shutil.rmtree(large, ignore_errors=True)
    large.mkdir(parents=True)
    source = Manifest.read(small)
    by_shard: dict[str, list] = {}
    for entry in source.written:
        by_shard.setdefault(entry.shard, []).append(entry)
    splits, written = {}, []
    for name, info in source.splits.items():
        count = copies * len(info.shards)
        new_shards = []
        for k in range(copies):
            for i, shard in enumerate(info.shards):
                target = prepare.shard_name(name, k * len(info.shards) + i, count)
                with tf.io.TFRecordWriter(str(large / target)) as writer:
                    for raw in tf.data.TFRecordDataset(str(small / shard.file)):
                        example = tf.train.SequenceExample.FromString(raw.numpy())
                        ids = example.context.feature["id"].bytes_list.value
                        ids[0] = f"copy{k}/".encode() + ids[0]
                        writer.write(example.SerializeToString(deterministic=True))
                new_shards.append(Shard(target, shard.records))
                written += [
                    dataclasses.replace(e, id=f"copy{k}/{e.id}", shard=target)
                    for e in by_shard.get(shard.file, ())
                ]
        splits[name] = SplitInfo(copies * info.records, tuple(new_shards))
    written.sort(key=lambda e: (e.split, e.id, e.start or 0.0))
    dataclasses.replace(
        source, splits=splits, written=tuple(written), input=f"{small} x{copies}"
    ).write(large)
    return large


def shard_megabytes(data_dir: Path, split: str) -> float:
    return sum(p.stat().st_size for p in data_dir.glob(f"{split}-*.tfrecord")) / 1e6


# -- one measurement (in a fresh process) --------------------------------------------


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(job: dict) -> dict:
    """Runs one reader configuration; returns peak RSS, baseline RSS and clips/s."""
    import tensorflow as tf

    from avts_tf.data import pipeline
    from avts_tf.data.audio_features import LogMelSpec

    spec = pipeline.ClipSpec(  # gin/quickstart.gin
        num_frames=8,
        crop_size=job["crop_size"],
        log_mel=LogMelSpec(mel_bins=40, window_s=0.04, hop_s=0.02),
    )
    batch = job["batch_size"]
    if job["reader"] == "train":
        dataset = pipeline.train_dataset(
            job["data_dir"], batch, spec=spec, cache_records=job["cache_records"]
        )
    else:
        kwargs = {"shuffle_buffer": job["shuffle_buffer"]} if "shuffle_buffer" in job else {}
        dataset = pipeline.eval_dataset(
            job["data_dir"], batch, spec=spec, split=job["eval_split"], **kwargs
        )
    tf.constant(0.0) + 1.0  # initialise the runtime before the baseline
    baseline = vm_rss_mb()
    iterator = iter(dataset)
    clips = 0
    if job["reader"] == "train":
        for _ in range(job["warmup"]):
            next(iterator)
        start = time.perf_counter()
        for _ in range(job["batches"]):
            clips += int(next(iterator)["video"].shape[0])
    else:  # warm-up batches of a first pass, then one full pass, timed from its start
        for _ in range(job["warmup"]):
            next(iterator, None)
        del iterator
        start = time.perf_counter()
        for element in dataset:
            clips += int(element["video"].shape[0])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_mb": peak, "reader_mb": peak - baseline, "rate": clips / seconds, "clips": clips}


def measure(job: dict) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if result.returncode:
        sys.exit(f"child failed ({job}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the table -----------------------------------------------------------------------


def spread(values: list[float], digits: int = 0) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache_dir",
        default="/tmp/avts_reader_memory",
        help="Where the prepared sets are built once and reused.",
    )
    parser.add_argument(
        "--videos",
        type=int,
        default=128,
        help="Synthetic videos of the small set (3/4 train, 1/4 test).",
    )
    parser.add_argument("--copies", type=int, default=10, help="The large set is this many copies.")
    parser.add_argument("--short_side", type=int, default=128, help="Stored frame size.")
    parser.add_argument("--shards", type=int, default=4, help="Shards per split (small set).")
    parser.add_argument("--crop_size", type=int, default=32, help="Crop (quickstart: 32).")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="Untimed batches (eval: of a first pass, then a timed pass).",
    )
    parser.add_argument("--batches", type=int, default=50, help="Timed train batches.")
    parser.add_argument("--eval_split", default="train", help="Split of the eval passes.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"Comma-separated subset of: {', '.join(CONFIGS)}.",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    configs = [c.strip() for c in args.configs.split(",")]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")

    key = hashlib.sha1(
        json.dumps([args.videos, args.short_side, args.shards, DURATION_S, FPS, VIDEO_FPS]).encode()
    ).hexdigest()[:10]
    root = Path(args.cache_dir) / f"set-{key}"
    start = time.perf_counter()
    small = build_small(root, args.videos, args.short_side, args.shards)
    large = build_large(small, root, args.copies)
    print(f"prepared sets in {time.perf_counter() - start:.0f} s under {root}", file=sys.stderr)
    sets = {"small": small, "large": large}

    from avts_tf.data.manifest import Manifest

    base = {
        "crop_size": args.crop_size,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "batches": args.batches,
        "eval_split": args.eval_split,
    }
    results: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        for config in configs:
            for name, data_dir in sets.items():
                out = measure({**base, **CONFIGS[config], "data_dir": str(data_dir)})
                results.setdefault((config, name), []).append(out)
                print(
                    f"  round {r + 1} {config:<14} {name}: {out['peak_mb']:.0f} MB peak, "
                    f"{out['reader_mb']:.0f} MB reader, {out['rate']:.1f} clips/s "
                    f"({out['clips']} clips)",
                    file=sys.stderr,
                    flush=True,
                )

    print()
    for name, data_dir in sets.items():
        prepared = Manifest.read(data_dir)
        print(
            f"{name}: {prepared.num_records('train')} train / "
            f"{prepared.num_records('test')} test records, "
            f"{shard_megabytes(data_dir, 'train'):.1f} MB of train shards"
        )
    print(
        f"clip {(8, args.crop_size, args.crop_size, 3)} from frames at short side "
        f"{args.short_side}, batch {args.batch_size}, {args.rounds} rounds; "
        f"train: {args.batches} batches after {args.warmup}; eval: a full pass of "
        f"{args.eval_split!r}\n"
    )
    print(f"{'config':<16}{'set':<7}{'peak RSS MB':>13}{'reader MB':>14}{'clips/s':>15}")
    for config in configs:
        for name in sets:
            runs = results[(config, name)]
            print(
                f"{config:<16}{name:<7}{spread([x['peak_mb'] for x in runs]):>13}"
                f"{spread([x['reader_mb'] for x in runs]):>14}"
                f"{spread([x['rate'] for x in runs]):>15}"
            )
    print(f"\n{'large / small (medians)':<26}{'peak RSS':>9}{'reader MB':>12}{'clips/s':>10}")
    for config in configs:
        ratios = []
        for column in ("peak_mb", "reader_mb", "rate"):
            small_runs, large_runs = ([x[column] for x in results[(config, name)]] for name in sets)
            ratios.append(statistics.median(large_runs) / statistics.median(small_runs))
        cells = (f"{x:>{w}.2f}x" for x, w in zip(ratios, (8, 11, 9), strict=True))
        print(f"{config:<26}" + "".join(cells))


if __name__ == "__main__":
    main()
