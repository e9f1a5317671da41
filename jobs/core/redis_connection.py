"""The one place Redis clients are made: one Redis host, or a primary found through Sentinel.

``REDIS_URL`` names the Redis deployment. With ``REDIS_SENTINELS`` (host:port,
comma-separated) and ``REDIS_SENTINEL_MASTER`` set, the host in a URL is not
used: every client asks the sentinels for the current primary of that master
and keeps the URL's database number, user and password. Such a client
(redis-py's ``SentinelConnectionPool``) asks again whenever a connection
fails or a server answers that it is now a read-only replica, so after a
failover it reaches the promoted replica without a process restart; its
commands are retried with a short backoff meanwhile, and a caller that
still sees a ``redis.ConnectionError`` (the Dramatiq consumer, the rate
limiter) recovers as it would from a Redis restart.

Every user takes its client from here: the broker (and with it pausing,
presence and Redis's clock), the email rate limiter, the API throttle, the
WebSocket tickets and the live-event publisher; the channel layer's host
entry in the settings comes from :func:`channel_layer_host`.
"""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.connection import SSLConnection, parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

#: A command that fails on a lost connection is retried this often (each time
#: asking the sentinels for the primary again) before the caller sees the error:
#: with no primary known, that is under a second. Opening a connection retries
#: as often, so a primary that stops answering without refusing (a dead host)
#: costs a command up to (retries + 1)² connect timeouts.
SENTINEL_RETRIES = 3
#: Seconds a connection to a sentinel or to the primary may take to open; a
#: dead host must not hold discovery up for long.
SENTINEL_CONNECT_TIMEOUT_S = 2.0
#: Seconds a sentinel may take to answer: discovery moves on to the next one.
SENTINEL_ANSWER_TIMEOUT_S = 1.0


def parse_sentinels(raw: str) -> list[tuple[str, int]]:
    """``"host:port, host:port"`` as ``[(host, port), ...]``; raises ValueError naming REDIS_SENTINELS."""
    addresses = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"REDIS_SENTINELS must be host:port[,host:port...], got {item!r}")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def connect_redis(url: str | None = None, **options: Any) -> redis.Redis:
    """A client for the configured Redis: ``url`` (default ``REDIS_URL``), through Sentinel when configured.

    ``options`` are redis-py connection options (``socket_timeout``, ...).
    The client holds its own connection pool and is thread-safe: keep it,
    do not make one per command (through Sentinel, each new client asks the
    sentinels for the primary before its first command).
    """
    url = url or settings.REDIS_URL
    sentinels: list[tuple[str, int]] = list(getattr(settings, "REDIS_SENTINELS", []))
    if not sentinels:
        return redis.Redis.from_url(url, **options)
    return sentinel_client(
        url,
        sentinels,
        settings.REDIS_SENTINEL_MASTER,
        sentinel_password=settings.REDIS_SENTINEL_PASSWORD or None,
        **options,
    )


def sentinel_client(
    url: str,
    sentinels: list[tuple[str, int]],
    master: str,
    *,
    sentinel_password: str | None = None,
    **options: Any,
) -> redis.Redis:
    """A client of ``master``'s current primary, found through ``sentinels``; ``url`` gives db and password."""
    if not master:
        raise ValueError("REDIS_SENTINEL_MASTER must name the master when REDIS_SENTINELS is set")
    connection = _connection_options(url)
    connection.setdefault("socket_connect_timeout", SENTINEL_CONNECT_TIMEOUT_S)
    connection.setdefault("socket_keepalive", True)
    connection.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=SENTINEL_RETRIES))
    connection.update(options)
    sentinel = Sentinel(sentinels, sentinel_kwargs=_sentinel_options(sentinel_password))
    return sentinel.master_for(master, **connection)


def channel_layer_host(
    url: str, sentinels: list[tuple[str, int]], master: str, sentinel_password: str | None = None
) -> str | dict[str, Any]:
    """The ``hosts`` entry of channels_redis' layer: the URL itself, or a Sentinel entry with its db and password.

    channels_redis (4.x) builds an asyncio ``SentinelConnectionPool`` from an
    entry that has ``master_name`` and ``sentinels``; the other keys are its
    connection options.
    """
    if not sentinels:
        return url
    if not master:
        raise ValueError("REDIS_SENTINEL_MASTER must name the master when REDIS_SENTINELS is set")
    from redis.asyncio.retry import Retry as AsyncRetry

    host: dict[str, Any] = {
        "master_name": master,
        "sentinels": list(sentinels),
        "sentinel_kwargs": _sentinel_options(sentinel_password, asynchronous=True),
        "socket_connect_timeout": SENTINEL_CONNECT_TIMEOUT_S,
        # A subscriber whose connection broke reconnects (and subscribes again) to the primary of the moment.
        "retry": AsyncRetry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=SENTINEL_RETRIES),
    }
    host.update(_connection_options(url))
    return host


def _connection_options(url: str) -> dict[str, Any]:
    """What a URL says besides its host: db, user, password, query options; TLS as ``ssl``."""
    options = dict(parse_url(url))
    options.pop("host", None)
    options.pop("port", None)
    options.pop("path", None)  # a unix socket: no host to follow
    connection_class = options.pop("connection_class", None)
    if connection_class is not None and issubclass(connection_class, SSLConnection):
        options["ssl"] = True  # SentinelConnectionPool picks its TLS connection class from this
    return options


def _sentinel_options(password: str | None, *, asynchronous: bool = False) -> dict[str, Any]:
    # No retry on a sentinel: an unreachable one is skipped for the next at once.
    if asynchronous:
        from redis.asyncio.retry import Retry as AsyncRetry

        retry: Any = AsyncRetry(NoBackoff(), 0)
    else:
        retry = Retry(NoBackoff(), 0)
    options: dict[str, Any] = {
        "socket_timeout": SENTINEL_ANSWER_TIMEOUT_S,
        "socket_connect_timeout": SENTINEL_ANSWER_TIMEOUT_S,
        "retry": retry,
    }
    if password:
        options["password"] = password
    return options
