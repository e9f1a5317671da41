"""Redis-backed limits shared by every worker process and machine.

``SendRateLimiter``: at most ``limit`` sends in any ``window_s`` window, as a
sliding-window log: one sorted-set member per granted permit, scored with
Redis' own clock (``TIME``), so the machines' clocks do not matter. A Lua
script expires old permits, counts, and grants in one atomic step.

A permit is taken right before its message goes to the SMTP server, so the
server sees each message at most one SMTP transaction after its permit. The
window kept in Redis is ``window_s + guard_s`` so that this lag cannot let a
window, as the provider measures it, hold more than ``limit`` messages.

``ConnectionSlots``: at most ``n`` SMTP connections open at once, as leases
that expire (a killed worker's lease lapses after ``ttl_s``).

A batch uses both through ``SendPermits`` (a permit per message) and
``ConnectionLease`` (its one connection's slot): each waits a little in the
thread and, when the wait would be long, raises ``SendingDeferred`` so that
the batch runs again later without holding a worker thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

import redis
from django.conf import settings

from campaigns.exceptions import SendingDeferred
from jobs.public import connect_redis

logger = logging.getLogger(__name__)

_ACQUIRE = """
local key, seq = KEYS[1], KEYS[2]
local limit, window_us, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_us)
local used = redis.call('ZCARD', key)
local grant = math.min(wanted, limit - used)
if grant > 0 then
  local first = redis.call('INCRBY', seq, grant) - grant
  for i = 1, grant do
    redis.call('ZADD', key, now, first + i)
  end
  redis.call('PEXPIRE', key, math.ceil(window_us / 1000) + 1000)
  redis.call('PEXPIRE', seq, math.ceil(window_us / 1000) + 1000)
  return {grant, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local wait_us = window_us
if oldest[2] then wait_us = tonumber(oldest[2]) + window_us - now end
return {0, math.max(wait_us, 1000)}
"""

_LEASE = """
local key, lease = KEYS[1], ARGV[1]
local slots, ttl_us = tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZSCORE', key, lease) or redis.call('ZCARD', key) < slots then
  redis.call('ZADD', key, now + ttl_us, lease)
  redis.call('PEXPIRE', key, math.ceil(ttl_us / 1000) + 1000)
  return 1
end
return 0
"""

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def redis_client() -> redis.Redis:
    """One client (a thread-safe connection pool) per Redis URL and process."""
    url = settings.EMAIL_RATE_LIMIT_REDIS_URL or settings.REDIS_URL
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = connect_redis(url)
        return client


def _key(name: str) -> str:
    return f"{settings.DRAMATIQ_NAMESPACE}:campaigns:{name}"


@dataclass(frozen=True)
class Grant:
    permits: int
    #: When nothing was granted: seconds until the oldest permit leaves the window.
    retry_after_s: float = 0.0


class SendRateLimiter:
    """At most ``limit`` sends in any ``window_s`` seconds, across all processes."""

    def __init__(
        self,
        limit: int | None = None,
        window_s: float | None = None,
        guard_s: float | None = None,
        client: redis.Redis | None = None,
        key: str | None = None,
    ) -> None:
        self.limit = settings.EMAIL_RATE_LIMIT_PER_MINUTE if limit is None else limit
        self.window_s = settings.EMAIL_RATE_LIMIT_WINDOW_S if window_s is None else window_s
        self.guard_s = settings.EMAIL_RATE_LIMIT_GUARD_S if guard_s is None else guard_s
        self.client = client or redis_client()
        self.key = key or _key("send-rate")
        self._script = self.client.register_script(_ACQUIRE)

    @property
    def enabled(self) -> bool:
        """A limit of 0 turns the limiter off (benchmarks, a provider without limits)."""
        return self.limit > 0

    def acquire(self, wanted: int = 1) -> Grant:
        """Take up to ``wanted`` permits now; never waits."""
        if not self.enabled:
            return Grant(wanted)
        window_us = int((self.window_s + self.guard_s) * 1_000_000)
        granted, wait_us = cast(
            list[Any], self._script(keys=[self.key, self.key + ":seq"], args=[self.limit, window_us, wanted])
        )
        return Grant(int(granted), int(wait_us) / 1_000_000)


class ConnectionSlots:
    """At most ``slots`` SMTP connections at once across all processes, as expiring leases."""

    def __init__(self, slots: int | None = None, ttl_s: float | None = None, client: redis.Redis | None = None) -> None:
        self.slots = settings.EMAIL_MAX_CONNECTIONS if slots is None else slots
        self.ttl_s = settings.EMAIL_CONNECTION_LEASE_S if ttl_s is None else ttl_s
        self.client = client or redis_client()
        self.key = _key("smtp-connections")
        self._script = self.client.register_script(_LEASE)

    def new_lease(self) -> str:
        return uuid.uuid4().hex

    def hold(self, lease: str) -> bool:
        """Take a slot for ``lease`` or extend it; False when every slot is taken."""
        if self.slots <= 0:
            return True
        return bool(self._script(keys=[self.key], args=[lease, self.slots, int(self.ttl_s * 1_000_000)]))

    def release(self, lease: str) -> None:
        if self.slots > 0:
            self.client.zrem(self.key, lease)


class SendPermits:
    """Rate-limit permits, one per message; a short wait in the thread, a long one reschedules."""

    def __init__(self) -> None:
        self.limiter = SendRateLimiter()
        self.max_wait_s = float(settings.EMAIL_RATE_LIMIT_MAX_WAIT_S)

    def take_one(self) -> None:
        if not self.limiter.enabled:
            return
        while True:
            grant = self.limiter.acquire(1)
            if grant.permits:
                return
            if grant.retry_after_s > self.max_wait_s:
                # Jitter that spreads deferred batches apart; nothing here needs unpredictability.
                delay = grant.retry_after_s + random.uniform(0, min(5.0, grant.retry_after_s / 10))  # noqa: S311
                raise SendingDeferred(
                    delay,
                    f"Waiting for the rate limit ({self.limiter.limit} per {self.limiter.window_s:g} s)",
                )
            time.sleep(grant.retry_after_s)


class ConnectionLease:
    """This batch's lease on one of the shared SMTP connection slots."""

    def __init__(self) -> None:
        self.slots = ConnectionSlots()
        self.lease = self.slots.new_lease()
        self.renewed = 0.0

    def take(self) -> None:
        # A slot frees up whenever another batch ends: worth a short wait in the thread.
        deadline = time.monotonic() + float(settings.EMAIL_RATE_LIMIT_MAX_WAIT_S)
        while not self.slots.hold(self.lease):
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise SendingDeferred(
                settings.EMAIL_CONNECTION_RETRY_S,
                f"Waiting for an SMTP connection slot ({self.slots.slots} in use)",
            )
        self.renewed = time.monotonic()

    def renew(self) -> None:
        if time.monotonic() - self.renewed > self.slots.ttl_s / 3:
            self.slots.hold(self.lease)
            self.renewed = time.monotonic()

    def release(self) -> None:
        try:
            self.slots.release(self.lease)
        except Exception:
            logger.warning("Could not release SMTP slot %s; it expires on its own", self.lease, exc_info=True)
