"""The shared start and error path of every command-line tool.

A user's mistake — a bad flag value, a missing file, an unknown name in a recipe — ends
with one line ``error: <problem>; <fix>`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import app, flags
from absl import logging as absl_logging

from avts_tf.errors import RunInterrupted, UserError, without_gin_note

USAGE_EXIT_CODE = 2


def quiet_tensorflow() -> None:
    """Keeps TensorFlow's C++ info lines off the console (before TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # oneDNN kernels: much faster convs on CPUs (benchmarks/towers.py; docs/performance.md).
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def quiet_logs() -> None:
    """Keeps TensorFlow's and absl's info chatter off the console."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


def fail(message: str, code: int = USAGE_EXIT_CODE) -> NoReturn:
    """Prints ``error: <message>`` on one line to stderr and exits with ``code`` (2).

    Gin's note of where an error was raised (``In call to configurable ...``) is dropped.
    """
    message = without_gin_note(message)
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
    sys.exit(code)


def _home(value: str) -> str:
    return os.path.expanduser(value) if value.startswith("~") else value


def _expand_home(argv: list[str]) -> list[str]:
    """Expands a leading ``~`` in the given flag values and arguments to the home folder.

    The shell leaves ``--model_dir=~/runs`` as it is (a ``~`` after ``--name=`` is not
    expanded): taken literally, it would make a folder named ``~`` in the current folder.
    """
    for name in list(flags.FLAGS):
        flag = flags.FLAGS[name]
        if not flag.present:
            continue
        if isinstance(flag.value, str):
            flag.value = _home(flag.value)
        elif isinstance(flag.value, list) and all(isinstance(v, str) for v in flag.value):
            flag.value = [_home(v) for v in flag.value]
    return [argv[0], *(_home(a) for a in argv[1:])]


def _parse_flags(argv: Sequence[str]) -> list[str]:
    """Parses the flags with absl; a bad flag reported as one ``error:`` line."""
    try:
        return _expand_home(flags.FLAGS(list(argv)))
    except flags.Error as err:
        text = str(err)
        missing = re.match(r"flag --(\w+)=None: Flag --\w+ must have a value other than None", text)
        if missing:
            text = f"--{missing.group(1)} is required"
        fail(f"{text}; see --helpshort for the flags and their valid values")


def _adopt_help(module_name: str) -> None:
    """Makes ``--help``/``--helpshort`` of a console script show the tool's doc and flags."""
    module = sys.modules.get(module_name)
    main = sys.modules.get("__main__")
    if module is not None and main is not None and module is not main and module.__doc__:
        with contextlib.suppress(AttributeError, TypeError):
            main.__doc__ = module.__doc__
    # The tool's own flags (those avts_tf.cli.flags defines for it included).
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def run(main: Callable[[list[str]], int | None]) -> NoReturn:
    """Runs an absl ``main(argv)``; a :class:`UserError` exits 2 with one line.

    A :class:`~avts_tf.errors.RunInterrupted` (a lost worker, a full disk) exits 3 with one
    line.

    ``FileNotFoundError`` and ``NotADirectoryError`` / ``PermissionError`` raised for a
    path the user gave count as user mistakes too.
    """

    def guarded(argv: list[str]) -> int | None:
        try:
            return main(argv)
        except UserError as err:
            fail(str(err))
        except RunInterrupted as err:  # a lost worker, a full disk: exit 3
            fail(str(err), code=err.exit_code)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as err:
            where = f" {err.filename}" if getattr(err, "filename", None) else ""
            fail(f"{err.strerror or err}:{where}; check the path and its permissions")
        except app.UsageError as err:
            fail(str(err))

    app.run(guarded, flags_parser=_parse_flags)
    raise AssertionError("unreachable: app.run exits")


def no_positional(argv: Sequence[str]) -> None:
    """Refuses positional arguments (a tool whose options are all ``--name=value``)."""
    if len(argv) > 1:
        fail(f"unexpected arguments {' '.join(argv[1:])}; give options as --name=value")


def entry_point(main: Callable[[list[str]], int | None]) -> Callable[[], None]:
    """The console-script function of a tool whose absl main is ``main``."""

    def console_script() -> None:
        quiet_tensorflow()
        _adopt_help(main.__module__)
        run(main)

    console_script.__doc__ = "Console-script entry point."
    return console_script
