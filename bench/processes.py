"""Starting and stopping the worker pools and baselines a benchmark runs.

The scripts start their processes in new sessions (so that a signal meant for
one pool never reaches another); a terminal's Ctrl-C then reaches only the
script itself. ``stop_children_at_exit`` makes the script's exit stop them all,
including those started by code it reuses (``bench.throughput``).
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import psutil

ROOT = Path(__file__).resolve().parent.parent


def start_logged(args: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``args`` from the project root in its own session, its output going to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(args), cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the main process only (as operators do); kill its whole group if it is not gone in 60 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def stop_children() -> None:
    """SIGTERM each child process, then kill the process groups of those still alive after 30 s."""
    children = psutil.Process().children(recursive=False)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=30)
    for child in alive:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            child.kill()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)


def stop_children_at_exit() -> None:
    """Call once at start: a normal exit, an exception, Ctrl-C or SIGTERM all stop the children."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    atexit.register(stop_children)
