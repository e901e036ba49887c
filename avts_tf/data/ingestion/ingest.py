"""Ingestion as ``avts-prepare`` runs it: the local pool or a Beam runner, or a shard check.

:func:`prepare` checks the runner's settings, then ingests (``prepare.prepare_dataset`` or
``beam_runner.prepare_dataset_beam``) or verifies and rebuilds a prepared dataset
(``prepare.verify_dataset``), and returns what to report as an :class:`Outcome`. This
module loads neither TensorFlow nor Apache Beam at import: ``avts-prepare`` imports it
before it checks its flags.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType

from avts_tf.data import manifest as manifest_lib
from avts_tf.data.manifest import IngestConfig, Manifest
from avts_tf.errors import RunInterrupted, UserError

RUNNERS = ("local", "DirectRunner", "FlinkRunner", "SparkRunner", "DataflowRunner")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an ``avts-prepare`` run did.

    Attributes:
        lines: The report, one printed line each.
        error: The one-line refusal that follows the report (nothing written, shards left
            bad), or None.
        manifest: The manifest an ingestion wrote (None for ``verify``).
    """

    lines: tuple[str, ...]
    error: str | None = None
    manifest: Manifest | None = None


def beam_runner_for(
    runner: str, beam_options: str, verify: bool, workers: int
) -> ModuleType | None:
    """The Beam runner module after checking the settings that go with ``runner``.

    Returns:
        ``avts_tf.data.ingestion.beam_runner``, or ``None`` for the local pool.

    Raises:
        UserError: An unknown runner, options that do not go with it, or Beam missing.
    """
    if runner not in RUNNERS:
        raise UserError(f"unknown --runner {runner!r}; choose one of {', '.join(RUNNERS)}")
    if runner == "local":
        if beam_options:
            raise UserError(
                f"--beam_options ({beam_options}) apply to a Beam runner, not "
                "the local pool; add --runner DirectRunner (or FlinkRunner, "
                "SparkRunner, DataflowRunner), or drop --beam_options"
            )
        return None
    if verify:
        raise UserError(
            f"--verify rebuilds bad shards with the local pool; drop --runner "
            f"{runner} (or re-run the ingestion itself with --runner)"
        )
    if workers != 1:
        raise UserError(
            f"--workers sets the local pool's processes, not {runner}'s; drop it "
            "and give the runner's parallelism in --beam_options (e.g. "
            "--direct_num_workers=2 for DirectRunner)"
        )
    try:
        from avts_tf.data.ingestion import beam_runner  # optional: apache_beam
    except ImportError as err:
        raise UserError(
            f"--runner {runner} needs Apache Beam ({err}); pip install "
            "'avts_tf[beam]', or use --runner local"
        ) from None
    try:
        beam_runner.parse_beam_options(runner, beam_options)
    except ValueError as err:
        raise UserError(str(err)) from None
    return beam_runner


def prepare(
    input_path: str | None,
    output: str,
    config: IngestConfig,
    *,
    workers: int = 1,
    runner: str = "local",
    beam_options: str = "",
    verify: bool = False,
    overwrite: bool = False,
    decode_timeout: float | None = 600.0,
) -> Outcome:
    """Ingests ``input_path`` into ``output`` (or, with ``verify``, checks its shards).

    Args:
        input_path: A folder of media, one media file, a CSV or a dataset root (not
            needed with ``verify``).
        output: The prepared dataset's folder.
        config: How media is ingested.
        workers: Decoding processes of the local pool.
        runner: ``local`` or an Apache Beam runner (:data:`RUNNERS`).
        beam_options: The Beam pipeline options, one string.
        verify: Check every shard of ``output`` and rebuild the bad ones instead.
        overwrite: Write into a non-empty output that is not a dataset of ours
            (``prepare.RunOptions``; the run shows a progress line).
        decode_timeout: Seconds one file may take to decode (``prepare.RunOptions``).

    Raises:
        UserError: Bad settings, a bad input or output (one line, with the fix).
        RunInterrupted: A full disk (the complete shards are kept).
    """
    beam_runner = beam_runner_for(runner, beam_options, verify, workers)
    # Loads TensorFlow: imported here, after the runner's settings are checked.
    from avts_tf.data.ingestion import prepare as prepare_lib

    if verify:
        return _verify(prepare_lib, output, workers)
    options = prepare_lib.RunOptions(
        progress=True, overwrite=overwrite, decode_timeout=decode_timeout
    )
    if input_path is None:
        raise UserError(
            "--input is required; give a folder, a media file or a CSV (or "
            "--verify to check an existing --output)"
        )
    try:
        if beam_runner is None:
            manifest = prepare_lib.prepare_dataset(
                input_path, output, config, workers=workers, options=options
            )
        else:
            manifest = beam_runner.prepare_dataset_beam(
                input_path,
                output,
                config,
                runner=runner,
                beam_args=beam_runner.parse_beam_options(runner, beam_options),
                options=options,
            )
    except RunInterrupted:  # a full disk: exit 3, the complete shards are kept
        raise
    except (ValueError, RuntimeError) as err:  # bad listings, layouts, settings
        raise UserError(str(err)) from None
    lines = (
        f"prepare_data: wrote {sum(e.records for e in manifest.written)} records, skipped "
        f"{len(manifest.skipped)} files; manifest at {output}/manifest.json",
    )
    error = None
    if not manifest.written:
        kinds = manifest.summary["skipped_by_kind"]
        reasons = ", ".join(f"{count} {kind}" for kind, count in kinds.items()) or "no input"
        hint = (
            "; audio-only inputs need --allow_missing_video"
            if "no_video" in kinds
            else "; video-only inputs need --allow_missing_audio"
            if "no_audio" in kinds
            else "; see the reasons in manifest.json"
        )
        error = f"nothing was written ({reasons}){hint}"
    return Outcome(lines, error, manifest)


def _verify(prepare_lib: ModuleType, output: str, workers: int) -> Outcome:
    if not manifest_lib.exists(output):
        raise UserError(
            f"{output} is not a prepared dataset (no manifest.json); give "
            "the --output of an avts-prepare run"
        )
    found, left = prepare_lib.verify_dataset(output, workers=workers)
    lines = [f"bad shard {problem.file}: {problem.problem}" for problem in found]
    if left:
        return Outcome(
            tuple(lines),
            f"{len(left)} shard(s) still bad after rebuilding (e.g. "
            f"{left[0].file}: {left[0].problem}); check that the source files are "
            "unchanged",
        )
    lines.append(
        f"verify: {len(found)} bad shard(s) rebuilt; every shard of {output} reads "
        "back as its manifest says"
        if found
        else f"verify: every shard of {output} reads back as its manifest says"
    )
    return Outcome(tuple(lines))
