"""Leave nothing running: on exit, Ctrl-C, SIGTERM or failure, stop every process a benchmark started.

The scripts start their processes in new sessions (so that a signal meant for
one pool never reaches another); a terminal's Ctrl-C then reaches only the
script itself. ``stop_children_at_exit`` makes the script's exit stop them all,
including those started by code it reuses (``bench.throughput``).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from types import FrameType

import psutil


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
