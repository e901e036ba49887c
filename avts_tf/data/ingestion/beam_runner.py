"""``prepare_data`` as an Apache Beam pipeline (``avts-prepare --runner DirectRunner`` ...).

The same ingestion as the local pool of :mod:`avts_tf.data.ingestion.prepare`, run by a
Beam runner (Direct, Flink, Spark, Dataflow) so that decoding spreads past one machine:

1. The launching process finds the inputs and plans the shards exactly as the local pool
   does (``prepare._plan_run`` → ``prepare.plan_shards``); shards already committed by an
   earlier run (``prepare._finished``) are left out, so a killed run, re-run with the same
   command, writes only the missing shards. The planned files of the missing shards go to
   ``OUT/.ingest/beam-inputs.jsonl`` (one line per file), which the pipeline reads (a large
   list is not embedded in the pipeline graph).
2. ``Decode``: each file through ``prepare.process_item`` — the same decode-and-encode
   function — in a child process of the worker, under the pool's time limit
   (``--decode_timeout``; kind ``timeout``) and crash isolation (a file that kills the
   decoder is skipped as kind ``crash``): a bad file becomes a skipped entry, never a
   pipeline failure.
3. ``ByShard``: results grouped by their planned shard; ``Write``: each shard written in
   plan order under a temporary name, its sidecar ``OUT/.ingest/{shard}.json``, then the
   rename — the same record bytes, shard names and sidecars as the local pool, through
   ``tf.io.gfile`` (a ``gs://`` output works).
4. The launching process assembles ``manifest.json`` from the sidecars
   (``prepare.build_manifest``).

Pipeline options (``--runner`` and everything after it: ``--direct_num_workers``,
``--flink_master``, ``--project`` ...) pass through to Beam's ``PipelineOptions``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import sys
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from avts_tf.data.ingestion import prepare, sources
from avts_tf.data.manifest import DEFAULTS, IngestConfig, Manifest

logger = logging.getLogger(__name__)

BEAM_RUNNERS = ("DirectRunner", "FlinkRunner", "SparkRunner", "DataflowRunner")
INPUTS_FILE = "beam-inputs.jsonl"  # In OUT/.ingest/ while a pipeline runs.


def parse_beam_options(runner: str, beam_options: str | Sequence[str] = ()) -> list[str]:
    """Checks a Beam runner and its pipeline options; returns the options as a list.

    Args:
        runner: One of ``BEAM_RUNNERS``.
        beam_options: Pipeline options, a shell-quoted string or a list
            (``"--direct_num_workers=2 --direct_running_mode=multi_processing"``).

    Raises:
        ValueError: ``<problem>; <fix>`` for an unknown runner, options that cannot be
            split, name a runner of their own, or that Beam does not know (it would
            silently drop them).
    """
    if runner not in BEAM_RUNNERS:
        raise ValueError(f"unknown Beam runner {runner!r}; choose one of {', '.join(BEAM_RUNNERS)}")
    if isinstance(beam_options, str):
        try:
            args = shlex.split(beam_options)
        except ValueError as err:
            raise ValueError(
                f"--beam_options {beam_options!r}: {err}; quote it as one "
                "shell word, e.g. --beam_options='--direct_num_workers=2'"
            ) from None
    else:
        args = list(beam_options)
    if any(a == "--runner" or a.startswith("--runner=") for a in args):
        raise ValueError(
            "--beam_options must not name a runner; give it as --runner "
            f"({', '.join(BEAM_RUNNERS)})"
        )
    options = PipelineOptions(args)
    unknown = sorted(
        set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
    )
    if unknown:
        names = ", ".join(f"--{name}" for name in unknown)
        raise ValueError(
            f"--beam_options: Beam does not know {names}; check the spelling "
            "against Beam's pipeline options (https://beam.apache.org/releases/"
            "pydoc/current/apache_beam.options.pipeline_options.html)"
        )
    return args


class _DecodeFn(beam.DoFn):
    """``(shard, count, position, item, label_index)`` → ``(shard, (..., entry, record))``."""

    def __init__(self, config: IngestConfig, timeout: float | None, spill_dir: str | None):
        self.config, self.timeout, self.spill_dir = config, timeout, spill_dir
        self.decoder: prepare.IsolatedDecoder | None = None

    def setup(self) -> None:
        # A long file's pieces go to spill files in the output's .ingest/ (only their
        # paths pass on), so no step holds a long file's records in memory.
        # Runners start one SDK worker process per core (docs/ingestion.md), so each
        # decodes single-threaded, as the local pool's workers do.
        self.decoder = prepare.IsolatedDecoder(
            self.config, self.timeout, self.spill_dir, decode_threads=1
        )

    def process(self, element: str) -> Iterator[tuple[str, tuple]]:
        shard, count, position, item, label_index = _parse_input(element)
        entry, data = self.decoder(item, label_index)
        yield shard, (count, position, item, label_index, entry, data)

    def teardown(self) -> None:
        if self.decoder is not None:
            self.decoder.close()


class _GfileShardWriter(prepare._ShardWriter):
    """``prepare._ShardWriter`` through ``tf.io.gfile``: local folders and ``gs://`` alike."""

    def __init__(self, out: str, plan: prepare.ShardPlan, config: IngestConfig):
        self.out, self.plan, self.config = out, plan, config
        # Unique per attempt: a runner may run a bundle twice (retries, speculation).
        self.tmp = os.path.join(out, f".{plan.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self.writer = tf.io.TFRecordWriter(self.tmp)
        self.entries = []
        self.spilled: list[str] = []

    def consumed(self, spilled: prepare.SpilledRecords) -> None:
        """Keeps ``spilled``'s files until the shard is committed: a retried bundle reads them."""
        self.spilled.extend(spilled.paths)

    def commit(self) -> None:
        self.writer.close()
        prepare._write_json(prepare._sidecar_path(self.out, self.plan), self.sidecar())
        if not prepare._is_remote(self.out):
            with open(self.tmp, "rb") as f:
                os.fsync(f.fileno())
        tf.io.gfile.rename(self.tmp, os.path.join(self.out, self.plan.name), overwrite=True)
        for path in self.spilled:
            with contextlib.suppress(tf.errors.NotFoundError):
                tf.io.gfile.remove(path)

    def discard(self) -> None:
        """Closes and removes the temporary shard (after a failed write)."""
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(tf.errors.OpError):
            tf.io.gfile.remove(self.tmp)


class _WriteShardFn(beam.DoFn):
    """``(shard, results)`` → the shard written in plan order, then its name."""

    def __init__(self, out: str, config: IngestConfig):
        self.out, self.config = out, config

    def process(self, element: tuple[str, Iterable[tuple]]) -> Iterator[str]:
        name, results = element
        ordered = sorted(results, key=lambda r: r[1])
        count = ordered[0][0]
        if [r[1] for r in ordered] != list(range(count)):  # a runner bug, not a bad file
            raise RuntimeError(
                f"shard {name}: got positions {[r[1] for r in ordered]} of {count} planned files"
            )
        plan = prepare.ShardPlan(
            name, ordered[0][2].split, tuple(r[2] for r in ordered), tuple(r[3] for r in ordered)
        )
        if prepare._finished(self.out, plan, self.config) is None:  # else a retried bundle
            writer = _GfileShardWriter(self.out, plan, self.config)
            try:
                for _, _, _, _, entry, data in ordered:
                    prepare.log_outcome(entry, data)
                    writer.add(entry, data)
                writer.commit()
            except BaseException:  # the runner retries the bundle; leave no temporary
                writer.discard()
                raise
        yield name


def _input_line(plan: prepare.ShardPlan, position: int) -> str:
    return json.dumps(
        {
            "shard": plan.name,
            "count": len(plan.items),
            "position": position,
            "item": asdict(plan.items[position]),
            "label_index": plan.label_indices[position],
        },
        sort_keys=True,
    )


def _parse_input(line: str) -> tuple[str, int, int, sources.SourceItem, int]:
    data = json.loads(line)
    return (
        data["shard"],
        data["count"],
        data["position"],
        sources.SourceItem(**data["item"]),
        data["label_index"],
    )


def _read_lines(path: str) -> Iterator[str]:
    """The lines of ``path`` through ``tf.io.gfile`` (as the outputs: no Beam file system)."""
    with tf.io.gfile.GFile(path, "r") as f:
        for line in f:
            if line.strip():
                yield line


def _write_inputs(path: str, plans: list[prepare.ShardPlan]) -> None:
    """Writes the planned files of ``plans``, one JSON line each (streamed)."""
    with tf.io.gfile.GFile(path, "w") as f:
        for plan in plans:
            for position in range(len(plan.items)):
                f.write(_input_line(plan, position) + "\n")


def _claim_remote(out: str, config: IngestConfig, input_path: str) -> None:
    """The owner check of a ``gs://`` output (no lock there: run one pipeline per output)."""
    tf.io.gfile.makedirs(os.path.join(out, prepare.STATE_DIR))
    state = {"config": asdict(config), "input": input_path}
    config_path = os.path.join(out, prepare.STATE_DIR, "config.json")
    previous = prepare._read_json(config_path)
    if previous is None:
        prepare._write_json(config_path, state)
    elif previous != state:
        raise ValueError(
            f"{out} holds a run with another input or config; re-run with the "
            "same flags to resume, or choose another --output"
        )


def _direct_runner(options: PipelineOptions):
    """Beam's FnApiRunner: the DirectRunner's engine that honours ``--direct_num_workers``.

    Beam 2.77's ``DirectRunner`` first tries Prism, which downloads a binary from GitHub
    and ignores ``--direct_num_workers`` / ``--direct_running_mode``; this is the engine it
    falls back to, built as it builds it.
    """
    # Beam's internals, loaded only for this fallback engine.
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(
        provision_info=fn_runner.ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
        )
    )


def run_pipeline(
    out: str,
    plans: list[prepare.ShardPlan],
    config: IngestConfig,
    runner: str,
    beam_args: Sequence[str],
    decode_timeout: float | None,
) -> None:
    """Runs the Beam pipeline that writes ``plans`` (shards not yet finished) into ``out``.

    Args:
        out: Output folder, local or ``gs://`` (it must hold ``.ingest/``).
        plans: The shards to write.
        config: The run's settings.
        runner: A Beam runner name (``BEAM_RUNNERS``).
        beam_args: Further pipeline options, passed to ``PipelineOptions``.
        decode_timeout: Seconds one file may take to decode (``None``: no limit).
    """
    state_dir = os.path.join(out, prepare.STATE_DIR)
    inputs = os.path.join(state_dir, INPUTS_FILE)
    _write_inputs(inputs, plans)
    prepare.remove_spill_files(state_dir)  # a killed run's
    options = PipelineOptions([f"--runner={runner}", *beam_args])
    engine = _direct_runner(options) if runner == "DirectRunner" else None
    with beam.Pipeline(runner=engine, options=options) as pipeline:
        _ = (
            pipeline
            | "Inputs" >> beam.Create([inputs])
            | "Lines" >> beam.FlatMap(_read_lines)
            | "Spread" >> beam.Reshuffle()
            | "Decode" >> beam.ParDo(_DecodeFn(config, decode_timeout, state_dir))
            | "ByShard" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteShardFn(out, config))
        )
    tf.io.gfile.remove(inputs)
    prepare.remove_spill_files(state_dir)  # those of retried decode bundles


def prepare_dataset_beam(
    input: str | os.PathLike,  # noqa: A002 - the CLI flag's name.
    output_dir: str | os.PathLike,
    config: IngestConfig = DEFAULTS,
    *,
    runner: str = "DirectRunner",
    beam_args: Sequence[str] = (),
    options: prepare.RunOptions = prepare.RunOptions(),  # noqa: B008 - frozen.
) -> Manifest:
    """``prepare.prepare_dataset`` run as an Apache Beam pipeline.

    Same inputs, settings, shard names, record bytes, sidecars and manifest as the local
    pool; a re-run resumes (finished shards are kept). The parallelism is the runner's
    (e.g. ``--direct_num_workers``), not ``workers``.

    Args:
        input: A folder, media file, CSV or dataset root (``prepare.prepare_dataset``).
        output_dir: Output folder, local or a URL such as ``gs://bucket/dataset``.
        config: The ingestion settings, as for ``prepare.prepare_dataset``.
        runner: Beam runner name (``BEAM_RUNNERS``).
        beam_args: Further pipeline options, e.g. ``["--direct_num_workers=2"]``.
        options: Progress (a start line and the summary table), overwrite (of a local
            folder) and the decode time limit of this run.

    Returns:
        The manifest (also written to ``output_dir/manifest.json``).
    """
    beam_args = parse_beam_options(runner, beam_args)
    remote = prepare._is_remote(output_dir)
    if runner == "DataflowRunner" and not remote:
        raise ValueError(
            f"--runner DataflowRunner writes from cloud workers, which cannot "
            f"reach {output_dir}; give a gs:// --output"
        )
    input_path, config, labels, plans, duplicates = prepare._plan_run(input, output_dir, config)
    progress = options.progress
    out = os.fspath(output_dir) if remote else str(Path(output_dir).absolute())
    if remote:
        _claim_remote(out, config, input_path)
        guard = contextlib.nullcontext()
    else:
        prepare._check_foreign(Path(out), options.overwrite)
        prepare._make_output(Path(out))
        guard = prepare._lock(Path(out))
    with guard:
        if not remote:
            prepare._clean_temporaries(Path(out))
            prepare._check_owner(Path(out), config, input_path)
            prepare._remove_stale(Path(out), plans)
        todo = [p for p in plans if prepare._finished(out, p, config) is None]
        if progress:
            files = sum(len(p.items) for p in todo)
            print(
                f"ingest: {files} files in {len(todo)}/{len(plans)} shards on {runner}"
                + (
                    f" ({len(plans) - len(todo)} shards already complete)"
                    if len(todo) < len(plans)
                    else ""
                ),
                file=sys.stderr,
                flush=True,
            )
        if todo:
            run_pipeline(out, todo, config, runner, beam_args, options.decode_timeout)
        extra = prepare._duplicate_entries(duplicates)
        manifest = prepare.build_manifest(
            config, input_path, labels, plans, out, extra_skipped=extra
        )
        manifest.write(out)
    if progress:
        print(prepare.format_summary(manifest), file=sys.stderr)
    return manifest
