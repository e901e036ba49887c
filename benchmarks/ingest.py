"""Ingestion speed against a plain PyAV decode of the same files, same number of workers.

    python benchmarks/ingest.py [--input DIR] [--workers 2] [--rounds 3]
        [--fps 25 --short_side 128] [--num_files 24 --duration_s 10] [--reencode_height 720]

Without ``--input``, ``--num_files`` clips of the synthetic world are generated once
(``--duration_s`` s at 25 fps, 128 px, 16 kHz: like real 10-second clips).
``--reencode_height H`` first re-encodes every input (H.264 CRF 23, 25 fps, AAC) at H lines
with PyAV, ``--copies`` times: real content at the decode cost of a larger source (the real
files at hand are at most 320 x 568), as corpus clips (Kinetics: mostly 360p-720p) have.

Each round times, interleaved:

* ``records``: ``prepare.process_item`` (decode, frame-rate resampling, resize, JPEG,
  audio resampling, serialization, the record bytes handed back to the parent) for every
  file in a warm process pool of ``--workers``, each decoding with the FFmpeg threads
  ``prepare_dataset`` gives its workers (``prepare.threads_per_decoder``): ingestion without
  start-up and shard I/O;
* ``pyav``: every video frame and audio frame of each file decoded with PyAV in the same
  pool (``frame.to_ndarray()`` on each);
* ``ingest``: the whole ``prepare.prepare_dataset`` into a fresh folder (its own pool's
  start-up, shards and manifest included).

Prints files/s per round and the ratios records / pyav and ingest / pyav with their
min-max spread. ``--rss_counts 20,200`` then runs ``avts-prepare`` on the first N files (the
inputs repeated as copies when there are fewer) in a fresh process per count and round and
prints its peak RSS (main process or largest worker): flat memory in the file count.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _decode(path: str) -> int:
    import av

    frames = 0
    with av.open(path) as container:
        chosen = [
            s for kind in (container.streams.video, container.streams.audio) for s in kind[:1]
        ]  # the streams ingestion reads
        for frame in container.decode(*chosen):
            frame.to_ndarray()
            frames += 1
    return frames


def _record(path: str) -> int:
    from avts_tf.data.ingestion import prepare, sources
    from avts_tf.data.manifest import IngestConfig

    entry, record = prepare.process_item(
        sources.SourceItem(path, Path(path).name, "x"),
        0,
        IngestConfig(**_CONFIG),
        decode_threads=_THREADS[0],
    )
    return len(record or b"")


_CONFIG: dict = {}
_THREADS = [0]  # decoder threads per worker, as prepare_dataset gives its pool's workers


def _reencode(source: str, target: Path, height: int) -> None:
    """``source`` scaled to ``height`` lines (even width), H.264 at 25 fps, mono AAC."""
    import fractions

    import av

    with av.open(source) as src, av.open(str(target), "w") as out:
        video = src.streams.video[0]
        audio = src.streams.audio[:1]
        width = round(video.codec_context.width * height / video.codec_context.height / 2) * 2
        out_video = out.add_stream("libx264", rate=25)
        out_video.width, out_video.height, out_video.pix_fmt = width, height, "yuv420p"
        out_video.options = {"crf": "23"}
        out_audio = out.add_stream("aac", rate=44100) if audio else None
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=44100)
        count = 0
        for frame in src.decode(video, *audio):
            if isinstance(frame, av.VideoFrame):
                scaled = frame.reformat(
                    width=width, height=height, format="yuv420p", interpolation="BICUBIC"
                )
                scaled.pts, scaled.time_base = count, fractions.Fraction(1, 25)
                count += 1
                out.mux(out_video.encode(scaled))
            else:
                for chunk in resampler.resample(frame):
                    chunk.pts = None
                    out.mux(out_audio.encode(chunk))
        out.mux(out_video.encode())
        if out_audio is not None:
            out.mux(out_audio.encode())


def _set_config(config: dict, workers: int) -> None:
    from avts_tf.data.ingestion import prepare

    _CONFIG.update(config)
    _THREADS[0] = prepare.threads_per_decoder(workers)


def _records_pass(pool, files: list[str]) -> float:
    start = time.perf_counter()
    list(pool.imap_unordered(_record, files, chunksize=1))
    return time.perf_counter() - start


def _pyav_pass(pool, files: list[str]) -> float:
    start = time.perf_counter()
    list(pool.imap_unordered(_decode, files, chunksize=1))
    return time.perf_counter() - start


def _ingest_pass(source: Path, work: Path, args: argparse.Namespace) -> float:
    from avts_tf.data.ingestion import prepare
    from avts_tf.data.manifest import IngestConfig

    out = work / f"prepared_{time.perf_counter_ns()}"
    start = time.perf_counter()
    config = IngestConfig(fps=args.fps, short_side=args.short_side, require_audio=False)
    prepare.prepare_dataset(
        source, out, config, workers=args.workers, options=prepare.RunOptions(progress=False)
    )
    elapsed = time.perf_counter() - start
    shutil.rmtree(out)
    return elapsed


def _rss_by_count(
    files: list[str], work: Path, counts: list[int], args: argparse.Namespace
) -> dict[int, list[float]]:
    """Peak RSS (MB) of ``avts-prepare`` on the first ``count`` files, per round."""
    from long_files import ingest

    peaks: dict[int, list[float]] = {count: [] for count in counts}
    folders = {}
    for count in counts:
        folders[count] = work / f"rss_{count}"
        folders[count].mkdir()
        for i in range(count):
            source = Path(files[i % len(files)])
            # Copies, not links: ingestion takes a file reached through several links once.
            shutil.copyfile(source, folders[count] / f"{i:05d}_{source.name}")
    for _ in range(args.rounds):
        for count in counts:
            out = work / f"rss_out_{count}"
            _, peak = ingest(
                folders[count], out, f"--workers={args.workers}", "--allow_missing_audio"
            )
            shutil.rmtree(out)
            peaks[count].append(peak)
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--short_side", type=int, default=128)
    parser.add_argument("--num_files", type=int, default=24)
    parser.add_argument("--duration_s", type=float, default=10.0)
    parser.add_argument("--reencode_height", type=int, default=None)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--rss_counts", default=None)
    args = parser.parse_args()
    from avts_tf.data.ingestion import sources, synthetic

    with tempfile.TemporaryDirectory(prefix="avts_ingest_bench_") as scratch:
        work = Path(scratch)
        if args.input:
            source = Path(args.input)
        else:
            source = work / "clips"
            synthetic.generate_synthetic_dataset(
                source,
                num_videos=args.num_files,
                seed=1,
                duration_s=args.duration_s,
                fps=25.0,
                size=128,
                num_classes=4,
                test_fraction=0.0,
            )
            source = source / "videos"
        if args.reencode_height:
            scaled = work / "reencoded"
            scaled.mkdir()
            for path in sources.walk_media(source):
                for copy in range(args.copies):
                    _reencode(str(path), scaled / f"{path.stem}_{copy}.mp4", args.reencode_height)
            source = scaled
        files = [str(p) for p in sources.walk_media(source)]
        context = multiprocessing.get_context("spawn")
        # Files without audio are ingested too: the decode pass reads them whole.
        config = {"fps": args.fps, "short_side": args.short_side, "require_audio": False}
        with context.Pool(
            args.workers, initializer=_set_config, initargs=(config, args.workers)
        ) as pool:
            list(pool.imap_unordered(_record, files[: args.workers]))  # warm the pool
            list(pool.imap_unordered(_decode, files[: args.workers]))
            rates = {"records": [], "pyav": [], "ingest": []}
            for _ in range(args.rounds):
                rates["records"].append(len(files) / _records_pass(pool, files))
                rates["pyav"].append(len(files) / _pyav_pass(pool, files))
                rates["ingest"].append(len(files) / _ingest_pass(source, work, args))
        if args.rss_counts:
            peaks = _rss_by_count(files, work, [int(n) for n in args.rss_counts.split(",")], args)
    print(f"{len(files)} files, {args.workers} workers, {args.rounds} interleaved rounds")
    if args.rss_counts:
        for count, values in peaks.items():
            print(
                f"avts-prepare on {count:4d} files: peak RSS {min(values):.0f}-{max(values):.0f} MB"
            )
    for name, values in rates.items():
        print(
            f"{name:7s} files/s: "
            + " ".join(f"{v:.2f}" for v in values)
            + f"  (median {statistics.median(values):.2f})"
        )
    for name in ("records", "ingest"):
        ratios = [a / p for a, p in zip(rates[name], rates["pyav"], strict=True)]
        print(
            f"ratio {name}/pyav: median {statistics.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
