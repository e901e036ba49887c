"""Checks of a training run's settings, done before anything is built or written.

Each failure is a :class:`avts_tf.errors.UserError` whose message reads
``<problem>; <fix>`` (the command-line tools print it as one line and exit 2).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import gin

from avts_tf import atomic
from avts_tf.config import moved_binding
from avts_tf.data import manifest as manifest_lib
from avts_tf.errors import UserError, first_names, without_gin_note

#: The run's configuration as gin bindings, written by the chief before training.
CONFIG_FILENAME = "config.gin"

#: Bindings that may change between a run and its resumption: how long and how often,
#: how it is evaluated and on how many devices, not what it learns.
RESUMABLE_CHANGES = (
    "Trainer.train_steps",
    "Trainer.checkpoint_every_steps",
    "run.callbacks",
    "Runtime.keep_checkpoints",
    "Runtime.deterministic",
    "Runtime.verbose",
    "Evaluation.",
    "make_strategy.",
)

#: What ``train.run`` writes into a model_dir (``--overwrite`` removes only these).
RUN_OUTPUTS = (
    "checkpoints",
    "tensorboard",
    "video_tower.keras",
    "audio_tower.keras",
    "run.json",
    "eval.json",
    "operative_config.gin",
    CONFIG_FILENAME,
)


def check_positive(binding: str, value: Any, allow_zero: bool = False) -> None:
    """Refuses a count that is not a positive integer (or zero, if allowed).

    ``binding`` names the setting (``train.Trainer.batch_size``).
    """
    lowest = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        kind = "a non-negative" if allow_zero else "a positive"
        example = 16 if binding.endswith(".batch_size") else 100
        raise UserError(
            f"{binding} is {value!r}; set it to {kind} integer, e.g. "
            f"--gin_param={binding}={example}"
        )


def check_factory(binding: str, value: Any, registry: str) -> None:
    """Refuses a binding that is not a factory (a string where ``@module.name`` belongs)."""
    if callable(value):
        return
    example = f"@{registry}.{value}" if isinstance(value, str) else f"@{registry}.<name>"
    raise UserError(
        f"{binding} is {value!r}, not a factory; bind a registered one with @, e.g. "
        f"{binding} = {example}"
    )


def check_builds(binding: str, factory: Callable[[], Any]) -> Any:
    """Refuses a factory whose bound settings its constructor rejects (``ValueError``).

    Called before the model_dir is touched, so a wrong value leaves nothing behind.

    Returns:
        What ``factory`` built.
    """
    try:
        return factory()
    except (ValueError, TypeError) as err:
        problem = without_gin_note(err).strip().rstrip(".")
        raise UserError(
            f"{binding} cannot be built: {problem}; fix its binding in the recipe or --gin_param"
        ) from None


def check_model_builds(
    video_tower: Callable[..., Any],
    audio_tower: Callable[..., Any],
    objective: Callable[[], Any],
    clip_spec: Any,
    dataset: str | os.PathLike,
) -> Any:
    """Refuses towers or a task whose bound settings they reject, at the run's input shapes.

    Builds each tower, then the task and its heads on the towers' outputs, once (a
    paper-scale tower takes about a second on a CPU) before the model_dir is touched, so
    a wrong width, depth, embedding size or head setting leaves nothing behind.

    Returns:
        The task built (to read its needs, e.g. ``window_multiple``; the run builds its own).
    """
    fps = manifest_lib.Manifest.read(os.fspath(dataset)).fps
    video = check_builds(
        "train.Model.video_tower", lambda: video_tower(input_shape=clip_spec.video_shape())
    )
    audio = check_builds(
        "train.Model.audio_tower", lambda: audio_tower(input_shape=clip_spec.audio_shape(fps))
    )
    task = check_builds("train.Model.objective", objective)
    check_builds(
        "train.Model.objective",
        lambda: task.build_head(int(video.outputs[0].shape[-1]), int(audio.outputs[0].shape[-1])),
    )
    return task


def check_replica_batch(batch_size: int, replicas: int, task: Any) -> None:
    """Refuses a batch the replicas cannot share evenly, or that the task cannot split."""
    if batch_size % replicas:
        raise UserError(
            f"train.Trainer.batch_size {batch_size} is not a multiple of the "
            f"{replicas} replicas; set it to a multiple of {replicas}"
        )
    per_replica, multiple = batch_size // replicas, task.batch_multiple
    if per_replica % multiple:
        control = getattr(task, "control", None)
        why = f" (control {control!r} pairs the two halves of each batch)" if control else ""
        raise UserError(
            f"train.Trainer.batch_size {batch_size} gives {per_replica} example(s) per "
            f"replica; the task {type(task).__name__} needs a multiple of {multiple} on each "
            f"replica{why}; set train.Trainer.batch_size to a multiple of "
            f"{multiple * replicas}"
        )


def check_prepared(dataset: Any) -> None:
    """Refuses a dataset that is not a prepared dataset folder."""
    if not isinstance(dataset, str | os.PathLike):
        raise UserError(
            f"train.run.dataset is {dataset!r}; bind a prepared dataset folder, "
            "e.g. @data.prepared_dataset() or @data.synthetic_dataset()"
        )
    path = os.fspath(dataset)
    if "://" not in path and not os.path.isdir(path):
        raise UserError(
            f"dataset {path} does not exist; prepare it first with avts-prepare "
            "--input MEDIA --output DIR and bind that DIR"
        )
    if not manifest_lib.exists(path):
        raise UserError(
            f"dataset {path} has no manifest.json; prepare it with avts-prepare "
            "--input MEDIA --output DIR and bind that DIR"
        )


def check_split_records(dataset: str | os.PathLike, train_split: str, eval_split: str) -> None:
    """Refuses a prepared dataset without records in the train or the evaluation split."""
    path = os.fspath(dataset)
    found = manifest_lib.Manifest.read(path)
    for role, split in (("train", train_split), ("evaluation", eval_split)):
        if found.num_records(split) == 0:
            held = ", ".join(f"{s} ({found.num_records(s)})" for s in found.split_names)
            raise UserError(
                f"dataset {path} has no records in the {role} split {split!r} (splits with "
                f"records: {held or 'none'}); re-prepare with a held-out split "
                f"(avts-prepare --test_fraction) or bind "
                f"{'train.Trainer.train_split' if role == 'train' else 'train.Evaluation.split'}"
                " to one of those"
            )


def check_clip_windows(
    dataset: str | os.PathLike, splits: dict[str, str], clip_spec: Any, multiple: int = 1
) -> None:
    """Refuses a dataset whose train or evaluation split holds no record of one clip window.

    Args:
        dataset: Prepared dataset folder.
        splits: ``role -> split`` (``{"train": "train", "evaluation": "test"}``).
        clip_spec: The run's ``data.ClipSpec`` (its window at the dataset's frame rate).
        multiple: The task's ``window_multiple`` (its slowest view, in clip windows).
    """
    found = manifest_lib.Manifest.read(os.fspath(dataset))
    window_seconds = clip_spec.window_seconds(found.fps) * multiple
    for role, split in splits.items():
        found.require_clip_windows(split, window_seconds, role, multiple=multiple)


def bindings(config_text: str) -> dict[str, str]:
    """``selector.parameter -> value`` of a gin configuration text (``gin.config_str()``).

    A ``run.<parameter>`` that moved into ``train.run``'s groups (a ``config.gin`` saved
    before they existed) reads under its new name, so such a run resumes.
    """
    found: dict[str, str] = {}
    key = None
    for line in config_text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace() and " = " in line and not line.startswith((")", "]", "}")):
            key, _, value = line.partition(" = ")
            selector, _, param = key.strip().rpartition(".")
            key = moved_binding(selector, param) or key.strip()
            found[key] = value.strip()
        elif key is not None:
            found[key] += " " + line.strip()
    return found


def differing_bindings(saved: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """``key: old -> new`` for each binding that differs, ignoring resumable changes."""
    rows = []
    for key in sorted(set(saved) | set(current)):
        if key.startswith(RESUMABLE_CHANGES) or saved.get(key) == current.get(key):
            continue
        rows.append(f"{key}: {saved.get(key, '(unset)')} -> {current.get(key, '(unset)')}")
    return rows


def _holds_run(model_dir: Path) -> bool:
    return any((model_dir / name).exists() for name in RUN_OUTPUTS)


def check_model_dir_holds_no_other_files(model_dir: str | os.PathLike, overwrite: bool) -> None:
    """Refuses a model_dir holding files but no run (footage, a prepared dataset).

    A run written there mixed its checkpoints and towers with the user's files, replacing
    any of the same name. A run's folder holds its ``config.gin`` (written first); hidden
    entries are ignored; ``overwrite`` writes beside the other files.

    Raises:
        UserError: No ``config.gin``, and a visible entry that a run does not write.
    """
    path = Path(model_dir)
    if overwrite or "://" in os.fspath(model_dir) or not path.is_dir():
        return
    if (path / CONFIG_FILENAME).exists():  # a run's first file: a run (and the user's notes)
        return
    others = sorted(entry.name for entry in path.iterdir() if not entry.name.startswith("."))
    if set(others) - set(RUN_OUTPUTS):
        raise UserError(
            f"model_dir {path} holds files that are not a training run ({first_names(others)}); "
            "give an empty or new --model_dir (or --overwrite to write the run beside them)"
        )


LOCK_FILENAME = ".avts_train.lock"


@contextlib.contextmanager
def model_dir_lock(model_dir: str | os.PathLike, is_chief: bool = True) -> Iterator[None]:
    """Holds ``model_dir`` for this run: a second run writing into it at once is refused.

    Two runs in one folder (a job restarted while its first instance still runs, the same
    command in two terminals) would write the same checkpoints, logs and towers. The lock
    is an exclusive ``flock`` on ``model_dir/.avts_train.lock``, released by the OS when the
    process ends however it ends, so a killed run leaves nothing to clean. Only the chief
    writes ``model_dir``, so only it locks; folders on remote file systems (``gs://``) are
    not locked.

    Raises:
        UserError: Another process holds the lock.
    """
    path = os.fspath(model_dir)
    if not is_chief or "://" in path or (os.path.exists(path) and not os.path.isdir(path)):
        yield  # (a file as model_dir is refused by prepare_model_dir)
        return
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, LOCK_FILENAME), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(
                f"another avts-train run is writing {path}; wait for it to finish, or stop it "
                "and re-run this command to resume (or give another --model_dir)"
            ) from None
        yield


def prepare_model_dir(
    model_dir: str | os.PathLike,
    overwrite: bool,
    is_chief: bool = True,
    config_text: Callable[[], str] = gin.config_str,
) -> None:
    """Checks ``model_dir`` against this run's configuration before training starts.

    A folder holding a run of another configuration is refused (the message lists the
    differing bindings) unless ``overwrite``, which removes that run's outputs (and only
    them). Then this run's configuration is written to ``config.gin``. Only the chief
    (``is_chief``) removes and writes; the other workers of a multi-worker run only check.

    Raises:
        UserError: ``model_dir`` is a file, or holds a run of another configuration.
    """
    path = Path(model_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"model_dir {path} is a file, not a folder; give another --model_dir")
    current = config_text()
    saved_file = path / CONFIG_FILENAME
    if path.is_dir() and _holds_run(path):
        saved = saved_file.read_text() if saved_file.is_file() else None
        rows = differing_bindings(bindings(saved), bindings(current)) if saved else []
        if overwrite and is_chief:
            for name in RUN_OUTPUTS:
                target = path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        elif rows and not overwrite:
            shown = "; ".join(rows[:8]) + (f"; and {len(rows) - 8} more" if len(rows) > 8 else "")
            raise UserError(
                f"model_dir {path} holds a run of another configuration ({shown}); re-run "
                "with --overwrite to replace it, or give a new --model_dir"
            )
    if is_chief:
        path.mkdir(parents=True, exist_ok=True)
        atomic.write_text(saved_file, current)
