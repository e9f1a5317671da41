"""A real web server and a load generator for the web benchmarks (``enqueue.py``, ``isolation.py``).

The server is uvicorn with ``--workers N`` serving ``config.asgi`` under
``bench.settings`` (the real settings plus the bench-only URLconf). The load
generator is this process: ``concurrency`` threads, each with one keep-alive
``http.client`` connection, sending requests back to back for ``seconds``
after a warm-up; it records every request's latency and status.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.processes import ROOT, start_logged


@dataclass
class LoadResult:
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int | str] = field(default_factory=Counter)  # an HTTP status, or the error's name

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, p: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[p - 1]

    def summary(self) -> str:
        return (
            f"{self.requests_per_s:7.0f} req/s   p50 {self.percentile(50):7.1f} ms   p99 {self.percentile(99):7.1f} ms"
            f"   statuses {dict(self.statuses)}"
        )


def start_web(port: int, workers: int, env: dict[str, str], log: Path) -> Any:
    """uvicorn serving Conveyor plus the bench endpoints; returns once ``/bench/ping`` answers."""
    proc = start_logged(
        [
            sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--no-access-log", "--log-level", "warning",
        ],
        log,
        {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "bench.settings"},
    )  # fmt: skip
    return wait_for_web(port, proc, log)


def wait_for_web(port: int, proc: Any, log: Path, timeout: float = 90) -> Any:
    """Wait until ``/bench/ping`` answers (401 without a token); fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/bench/ping")
            if connection.getresponse().status == 401:
                return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the web server did not start; see {log}")
        time.sleep(0.2)


def setup_database(url: str | None, name: str) -> None:
    """Point Django at ``url``, or at a new private PostgreSQL cluster (stopped at exit); migrate; set up Django."""
    if url is None:
        from tests.faults.private_postgres import PrivatePostgres

        cluster = PrivatePostgres(fsync=True).init()
        atexit.register(cluster.cleanup)
        url = cluster.create_database(name)
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def staff_token(username: str = "bench-staff") -> str:
    """A new API token of a staff user (Django must be set up)."""
    from django.contrib.auth import get_user_model

    from jobs.web.credentials import issue_token

    user, _ = get_user_model().objects.update_or_create(username=username, defaults={"is_staff": True})
    return issue_token(user)[1]


def run_load(
    port: int,
    method: str,
    path: str,
    token: str,
    *,
    body: dict[str, Any] | None = None,
    concurrency: int = 8,
    seconds: float = 10.0,
    warmup_s: float = 2.0,
    keep_alive: bool = True,
) -> LoadResult:
    """Send requests from ``concurrency`` clients; measure after the warm-up.

    With ``keep_alive`` each client keeps one connection, which stays with the
    server process that accepted it; without, each request is a new visitor
    on a new connection, which any server process may accept.
    """
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    started = time.monotonic()
    measure_from = started + warmup_s
    stop_at = measure_from + seconds
    result = LoadResult(seconds=seconds)
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies: list[float] = []
        statuses: Counter[int | str] = Counter()
        while True:
            sent = time.monotonic()
            if sent >= stop_at:
                break
            status: int | str
            try:
                connection.request(method, path, body=payload, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status = type(exc).__name__
            if sent >= measure_from:
                latencies.append((time.monotonic() - sent) * 1000)
                statuses[status] += 1
            if not keep_alive:
                connection.close()
        connection.close()
        with lock:
            result.latencies_ms.extend(latencies)
            result.statuses.update(statuses)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


__all__ = ["ROOT", "LoadResult", "run_load", "setup_database", "staff_token", "start_web", "wait_for_web"]
