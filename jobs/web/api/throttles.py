"""Request rates: sign-in attempts per client address and per username, job starts and uploads per user.

Counted in Redis, shared by every web process of every host: with a
per-process count, four web processes would each allow the full rate. Each
limit is an estimated sliding window: a counter per fixed window (this one and
the one before), the one before weighted by how much of it the sliding window
still covers. One round trip per request whatever the rate (DRF's own
throttle rereads and rewrites a list of every request's timestamp, which cost
the job-start endpoint a tenth of its speed at 600/min). A refused request
gets 429 with ``Retry-After`` and is not counted, so a client that waits that
long gets in. When Redis cannot be reached the request is let through (and
logged): the throttle guards the server, it must not take it down. Rates are
settings (``THROTTLE_*``); ``off`` turns one off.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from typing import Any

import redis
from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from jobs.core.redis_connection import connect_redis

logger = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@functools.cache
def _redis() -> redis.Redis:
    # One connection pool per process; a short timeout, since every throttled request waits on it.
    return connect_redis(socket_timeout=1, socket_connect_timeout=1)


def seconds_until_allowed(previous: int, current: int, limit: int, elapsed: float, duration: int) -> float:
    """How long until one more request fits, given the two windows' counts (this request not counted).

    ``elapsed`` is the fraction of the current window that has passed.
    """
    # Still in this window: the previous window's weight shrinks as time passes.
    excess = previous * (1 - elapsed) + current + 1 - limit
    if excess <= 0:
        return 0.0
    if previous and excess / previous <= 1 - elapsed:
        return excess / previous * duration
    # In the next window this one becomes "previous"; its weight must fall enough.
    fraction = max(0.0, 1 - (limit - 1) / current) if current else 0.0
    return (1 - elapsed + fraction) * duration


class _SharedThrottle(SimpleRateThrottle):
    def __init__(self) -> None:
        super().__init__()
        self._limit, self._duration = self.parse_rate(self.rate)
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        limit, duration = self._limit, self._duration
        if limit is None or duration is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        try:
            return self._count(key, limit, duration)
        except redis.RedisError:  # Redis unreachable: serve the request rather than fail it
            logger.warning("Throttle %s could not count a request; letting it through", self.scope, exc_info=True)
            return True

    def _count(self, key: str, limit: int, duration: int) -> bool:
        position = time.time() / duration
        window = math.floor(position)
        prefix = f"{settings.DRAMATIQ_NAMESPACE}:throttle:{key}"
        current_key = f"{prefix}:{window}"
        pipe = _redis().pipeline(transaction=False)
        pipe.incr(current_key)
        pipe.expire(current_key, 2 * duration)
        pipe.get(f"{prefix}:{window - 1}")
        current, _, previous = pipe.execute()
        elapsed = position - window
        if int(previous or 0) * (1 - elapsed) + current <= limit:
            return True
        _redis().decr(current_key)
        self._wait = seconds_until_allowed(int(previous or 0), current - 1, limit, elapsed, duration)
        return False

    def wait(self) -> float | None:
        return self._wait


class LoginAddressThrottle(_SharedThrottle):
    """Sign-in attempts from one client address (uvicorn's, which trusts only the configured proxies)."""

    scope = "login-address"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginUsernameThrottle(_SharedThrottle):
    """Sign-in attempts on one username, from anywhere: guessing one account's password from many addresses."""

    scope = "login-username"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        data = request.data
        username = data.get("username") if hasattr(data, "get") else None
        if not isinstance(username, str) or not username.strip():
            return None  # nothing to guess against: the view answers 400
        ident = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": ident}


class _PerUserWriteThrottle(_SharedThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if not getattr(user, "is_authenticated", False):
            return None  # refused by authentication anyway
        return self.cache_format % {"scope": self.scope, "ident": user.pk}


class JobStartThrottle(_PerUserWriteThrottle):
    """Jobs one user starts through the API."""

    scope = "job-start"


class UploadThrottle(_PerUserWriteThrottle):
    """Documents one user uploads."""

    scope = "upload"
