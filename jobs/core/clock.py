"""One clock for the platform: Redis's for liveness and delays, the database's for job rows.

Hosts' clocks differ. A worker whose clock is two minutes behind would write
heartbeats that look two minutes old and have its running jobs taken over; one
two minutes ahead would hold back crash recovery and run delayed jobs early.
So nothing compares one host's clock with another's:

* heartbeats, dead-worker cut-offs, presence entries, delayed messages' due
  times and schedule fire times are read from Redis's clock (``TIME``), through
  a :class:`RedisClock`;
* job timestamps (``started_at``, ``updated_at``, ...) are written with the
  database's ``now()`` and compared with :func:`database_now`.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)

#: How often a clock measures its offset to Redis again (a host's clock may be stepped meanwhile).
REFRESH_S = 30.0
#: After a failed measurement, the last offset is kept and measured again this soon.
RETRY_S = 1.0


class RedisClock:
    """Redis's clock, read as this host's clock plus a measured offset.

    One ``TIME`` round trip measures the offset (to within half the round
    trip); it is measured again every ``REFRESH_S``. Until a first measurement
    succeeds every reading asks Redis and raises if Redis does not answer:
    a time guessed from this host's clock is what this class exists to avoid.
    """

    def __init__(self, client: Any, refresh_s: float = REFRESH_S) -> None:
        self._client = client
        self._refresh_s = refresh_s
        self._offset_s = 0.0
        self._measured = False
        self._next_measure_at = 0.0  # time.monotonic()

    def offset_s(self) -> float:
        """Redis's time minus this host's, in seconds."""
        if time.monotonic() >= self._next_measure_at:
            self._measure()
        return self._offset_s

    def _measure(self) -> None:
        try:
            before = time.time()
            seconds, micros = self._client.time()
            after = time.time()
        except Exception:
            if not self._measured:
                raise
            logger.warning("Could not read Redis's clock; keeping the last offset (%.3f s)", self._offset_s)
            self._next_measure_at = time.monotonic() + RETRY_S
            return
        self._offset_s = int(seconds) + int(micros) / 1e6 - (before + after) / 2
        self._measured = True
        self._next_measure_at = time.monotonic() + self._refresh_s

    def now(self) -> float:
        """Redis's time, in seconds since the epoch."""
        return time.time() + self.offset_s()

    def now_ms(self) -> int:
        """Redis's time in milliseconds (what Dramatiq's heartbeats and etas are counted in)."""
        return int((time.time() + self.offset_s()) * 1000)

    def to_local_ms(self, redis_ms: float) -> float:
        """A Redis time in milliseconds as this host's clock reads it."""
        return redis_ms - self.offset_s() * 1000


def database_now() -> datetime:
    """The database's current time: what job timestamps are compared with."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement_timestamp()")
            row = cursor.fetchone()
        return row[0]  # type: ignore[no-any-return]
    # SQLite runs inside this process: its clock is this host's.
    return timezone.now()
