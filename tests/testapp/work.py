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


def leak_memory(megabytes_per_step: int, max_megabytes: int = 1000) -> int:
    """Grow step by step, keeping every block, as a leaking job does (bounded only for safety)."""
    leaked: list[bytearray] = []
    while len(leaked) * megabytes_per_step < max_megabytes:
        leaked.append(bytearray(b"x" * (megabytes_per_step * 1024 * 1024)))
        time.sleep(0.02)
    return len(leaked)
