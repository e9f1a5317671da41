"""Throughput of no-op jobs: plain Dramatiq actors versus Conveyor jobs, same workers, same run.

    .venv/bin/python bench/throughput.py [--jobs 20000] [--processes 2] [--threads 8]

Plain: Dramatiq's RedisBroker with its default middleware, a no-op actor.
Conveyor: canary jobs (one progress write each) with the Job mirror, the
watchdog and the broker extensions on, against PostgreSQL. Each side is
timed from the first enqueue to the last job done, enqueue included.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("DRAMATIQ_NAMESPACE", "conveyor-bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("JOBS_PROGRESS_MIN_INTERVAL_S", "0.5")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def bench_plain(jobs: int, processes: int, threads: int) -> float:
    import redis

    sys.path.insert(0, str(ROOT / "bench"))
    import plain_dramatiq_app as app  # type: ignore[import-not-found]

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    for key in client.scan_iter("bench-plain:*"):
        client.delete(key)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "plain_dramatiq_app",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--queues",
            "bench",
        ],
        cwd=ROOT / "bench",
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(4)  # let both worker processes boot
    started = time.monotonic()
    batch = 1000
    for first in range(0, jobs, batch):
        with app.broker.client.pipeline(transaction=False):
            for _ in range(min(batch, jobs - first)):
                app.noop.send()
    while app.broker.do_qsize("bench") > 0:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    _stop(proc)
    return jobs / elapsed


def bench_conveyor(jobs: int, processes: int, threads: int) -> float:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from jobs.models import Job, JobStatus
    from jobs.services import build_job, create_jobs

    call_command("migrate", verbosity=0)
    Job.objects.filter(queue="maintenance").delete()
    env = {
        **os.environ,
        "QUEUE_MAINTENANCE_PROCESSES": str(processes),
        "QUEUE_MAINTENANCE_THREADS": str(threads),
        "dramatiq_queue_prefetch": str(threads),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "rundramatiq",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--queues",
            "maintenance",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(6)
    started = time.monotonic()
    batch = 1000
    args = {"queue": "maintenance", "seconds": 0, "steps": 1, "fail": False}
    for first in range(0, jobs, batch):
        with transaction.atomic():
            create_jobs(
                [
                    build_job(
                        job_type="canary", queue="maintenance", actor="canary_maintenance", arguments=args
                    )
                    for _ in range(min(batch, jobs - first))
                ]
            )
    while Job.objects.filter(queue="maintenance", status=JobStatus.COMPLETED).count() < jobs:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    _stop(proc)
    failed = Job.objects.filter(queue="maintenance").exclude(status=JobStatus.COMPLETED).count()
    if failed:
        print(f"warning: {failed} jobs did not complete")
    return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    plain = bench_plain(args.jobs, args.processes, args.threads)
    print(f"plain dramatiq : {plain:8.0f} jobs/s")
    conveyor = bench_conveyor(args.jobs, args.processes, args.threads)
    print(f"conveyor       : {conveyor:8.0f} jobs/s")
    print(f"ratio          : {conveyor / plain:8.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
