"""One value per process, computed again when older than a few seconds: cheap answers to frequent probes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    """``compute()``'s value, kept in this process for ``ttl_s()`` seconds from the start of its computation.

    Process-local on purpose: no network round trip, and it still answers
    when Redis (which a report may be about) does not. Callers that miss at
    the same moment wait for one computation instead of each running their
    own. ``ttl_s`` is read on every call, so a test can change the setting.
    """

    def __init__(self, compute: Callable[[], T], ttl_s: Callable[[], float]) -> None:
        self._compute = compute
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._value: T | None = None
        self._computed_at: float | None = None

    def get(self) -> T:
        with self._lock:
            now = time.monotonic()
            if self._computed_at is not None and now - self._computed_at < self._ttl_s():
                return self._value  # type: ignore[return-value]
            # Timed from the start: the value served is never older than the TTL.
            value = self._compute()
            self._value, self._computed_at = value, now
            return value

    def clear(self) -> None:
        with self._lock:
            self._value, self._computed_at = None, None
