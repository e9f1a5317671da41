"""Loaded at start-up by the processes that tests/faults/test_clock_skew.py runs under libfaketime.

Those processes read the wall clock minutes off (``FAKETIME``) while their
monotonic clock stays true (``FAKETIME_DONT_FAKE_MONOTONIC=1``), as on a host
whose clock is wrong. libfaketime 0.9.10 (Debian 12) then fails Python 3.11's
``time.sleep``, which waits with ``clock_nanosleep(CLOCK_MONOTONIC,
TIMER_ABSTIME)``, with EINVAL (wolfcw/libfaketime#426). Waits on locks and
events are unaffected, so ``time.sleep`` waits on an event instead.
"""

from __future__ import annotations

import threading
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(seconds)


time.sleep = _sleep
