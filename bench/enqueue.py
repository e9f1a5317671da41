"""Enqueue: ``POST /api/jobs/canary`` versus a trivial authenticated DRF endpoint, same server, same load.

    .venv/bin/python bench/enqueue.py [--concurrency 8] [--seconds 10] [--web-workers 2] [--database-url URL]

The server is uvicorn with ``--web-workers`` processes on PostgreSQL (a private
cluster on a spare port, ``tests/faults/private_postgres.py``, so that other
users of the machine's server cannot exhaust its connections mid-run; or
``--database-url``) and Redis (database 14, namespace ``conveyor-bench-web``); no
worker pool runs, so the canaries only wait in Redis (deleted at the end).
The baseline is ``GET /bench/ping`` (token authentication, no query of its
own; ``bench/urls.py``, mounted only by ``bench.settings``). The load is
``--concurrency`` keep-alive connections from this process (``bench/web.py``).
The baseline runs before and after the canary run, so drift on a shared
machine shows. Target: canary requests/s >= 0.7 x the baseline's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/email.py would shadow the standard library
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
os.environ.setdefault("DRAMATIQ_NAMESPACE", "conveyor-bench-web")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
# One client starting ~100 jobs/s is far over a tenant's limit (600/min); the throttle still
# counts every request in Redis, so its cost is measured, but refuses none of them.
os.environ.setdefault("THROTTLE_JOB_START", "1000000/minute")

from bench.processes import stop, stop_children_at_exit  # noqa: E402 - needs the project root on the path
from bench.web import run_load, setup_database, staff_token, start_web  # noqa: E402
from tests.services import free_port  # noqa: E402


def forget_canaries() -> None:
    """Delete this benchmark's jobs and their messages."""
    import redis
    from django.conf import settings

    from jobs.models import Job

    Job.objects.filter(type="canary").delete()
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(match=f"{settings.DRAMATIQ_NAMESPACE}:*", count=1000):
        client.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--database-url", help="an existing PostgreSQL database instead of a private cluster")
    args = parser.parse_args()
    stop_children_at_exit()
    setup_database(args.database_url, "bench_web")
    token = staff_token()
    forget_canaries()
    port = free_port()
    web = start_web(port, args.web_workers, {}, ROOT / "var" / "bench-enqueue-web.log")
    try:
        load = {"concurrency": args.concurrency, "seconds": args.seconds}
        before = run_load(port, "GET", "/bench/ping", token, **load)
        canary = run_load(port, "POST", "/api/jobs/canary", token, body={"queue": "maintenance"}, **load)
        after = run_load(port, "GET", "/bench/ping", token, **load)
    finally:
        stop(web)
        forget_canaries()
    baseline = (before.requests_per_s + after.requests_per_s) / 2
    print(f"uvicorn x {args.web_workers}, {args.concurrency} connections, {args.seconds:.0f} s per run, PostgreSQL")
    print(f"GET  /bench/ping (before)  {before.summary()}")
    print(f"POST /api/jobs/canary      {canary.summary()}")
    print(f"GET  /bench/ping (after)   {after.summary()}")
    print(f"ratio canary / ping requests/s {canary.requests_per_s / baseline:.2f} (target >= 0.70)")
    print(
        f"      canary / ping p50 {canary.percentile(50) / before.percentile(50):.2f}x,"
        f" p99 {canary.percentile(99) / before.percentile(99):.2f}x (latency: lower is better)"
    )


if __name__ == "__main__":
    main()
