"""Module-level functions run in child processes by the test actors."""

from __future__ import annotations

import ctypes
import time


def sleep_in_c(seconds: float) -> str:
    # libc's sleep holds no Python frame: nothing but a kill can stop it.
    ctypes.CDLL(None).sleep(int(seconds))
    return "woke up"


def allocate_mb(megabytes: int) -> int:
    blocks = [bytearray(1024 * 1024) for _ in range(megabytes)]
    return len(blocks)


def busy_for(seconds: float) -> int:
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        count += 1
    return count


def hold_memory(megabytes: int, seconds: float) -> int:
    """Allocate and touch ``megabytes`` of memory, then hold it for a while."""
    blocks = [bytearray(b"x" * (1024 * 1024)) for _ in range(megabytes)]
    time.sleep(seconds)
    return len(blocks)
