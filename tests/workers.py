"""Launch ``tools/train.py`` as the workers of a MultiWorkerMirroredStrategy on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from checks import REPO_ROOT, subprocess_env


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports free on 127.0.0.1 right now."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start(count: int, args: Callable[[int], Sequence[str]]) -> list[subprocess.Popen]:
    """Starts ``count`` workers of ``tools/train.py`` with ``args(index)`` each."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(count)]
    processes = []
    for index in range(count):
        env = subprocess_env(
            TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            ),
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, str(Path(REPO_ROOT) / "tools" / "train.py"), *args(index)],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return processes


def finish(processes: list[subprocess.Popen], timeout: float = 400) -> list[tuple[str, str]]:
    """Waits for every worker; returns their ``(stdout, stderr)`` (kills them on timeout)."""
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=timeout))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs
