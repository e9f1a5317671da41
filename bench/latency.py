"""Pickup latency on an idle queue: plain Dramatiq versus Conveyor, same run.

    .venv/bin/python bench/latency.py [--jobs 100]

Each side gets one worker process with one thread and an otherwise idle
queue; jobs are posted one at a time, a random 50-300 ms apart (so the
consumer is idle, as in production between bursts). Plain: time from send()
to the actor starting. Conveyor: a canary job, from the Job row's creation
(before the insert and the send) to its claim (``started_at``).
Target: Conveyor's median within 10 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/email.py would shadow the standard library
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("DRAMATIQ_NAMESPACE", "conveyor-bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("BENCH_REDIS_URL", os.environ["REDIS_URL"])

from bench.processes import start_logged, stop  # noqa: E402 - needs the project root on the path


def _pause() -> None:
    time.sleep(random.uniform(0.05, 0.3))


def plain(jobs: int) -> list[float]:
    from bench import plain_dramatiq_app as app

    client = app.broker.client
    client.delete("bench-plain:pickup")
    proc = start_logged(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "bench.plain_dramatiq_app",
            "--processes",
            "1",
            "--threads",
            "1",
            "--queues",
            "bench-latency",
        ],
        ROOT / "var" / "bench-latency-plain.log",
    )
    time.sleep(5)
    for _ in range(jobs):
        _pause()
        app.record_pickup.send(time.time())
    deadline = time.monotonic() + 60
    while client.llen("bench-plain:pickup") < jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    stop(proc)
    return [float(value) * 1000 for value in client.lrange("bench-plain:pickup", 0, -1)]


def conveyor(jobs: int) -> list[float]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from jobs.dispatch.canaries import send_canaries
    from jobs.models import Job, JobStatus

    call_command("migrate", verbosity=0)
    env = {**os.environ, "QUEUE_MAINTENANCE_THREADS": "1", "dramatiq_queue_prefetch": "1"}
    proc = start_logged(
        [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "1", "--queues", "maintenance"],
        ROOT / "var" / "bench-latency-conveyor.log",
        env,
    )
    time.sleep(6)
    ids: list[Any] = []
    for _ in range(jobs):
        _pause()
        with transaction.atomic():
            ids.extend(job.id for job in send_canaries(["maintenance"]))
    deadline = time.monotonic() + 60
    while Job.objects.filter(id__in=ids, status=JobStatus.COMPLETED).count() < jobs and time.monotonic() < deadline:
        time.sleep(0.1)
    stop(proc)
    return [
        (started - created).total_seconds() * 1000
        for created, started in Job.objects.filter(id__in=ids).values_list("created_at", "started_at")
        if started
    ]


def _summary(name: str, samples: list[float]) -> str:
    samples = sorted(samples)
    p90 = samples[int(len(samples) * 0.9) - 1]
    return (
        f"{name:15} n={len(samples):4}  median {statistics.median(samples):7.1f} ms"
        f"  p90 {p90:7.1f} ms  max {samples[-1]:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100)
    args = parser.parse_args()
    baseline = plain(args.jobs)
    ours = conveyor(args.jobs)
    print(_summary("plain dramatiq", baseline))
    print(_summary("conveyor", ours))
    print(
        f"median ratio (conveyor / plain): {statistics.median(ours) / statistics.median(baseline):.3f}"
        "   target: conveyor median <= 10 ms"
    )


if __name__ == "__main__":
    main()
