"""Throughput of no-op jobs: plain Dramatiq actors versus Conveyor jobs, same workers, same run.

    .venv/bin/python bench/throughput.py [--jobs 20000] [--processes 2] [--threads 8] [--prefetch 16]

Both sides run the same worker configuration: processes, threads, and the
messages each process holds (prefetch; Dramatiq's default, 2 x threads, for
both unless told otherwise). For Conveyor that is the queue table's
``QUEUE_<QUEUE>_PREFETCH``: a queue of many short jobs is configured so.

Plain: Dramatiq's RedisBroker with its default middleware and a no-op actor.
Conveyor: canary jobs (a progress report each) with the Job mirror, the
watchdog and the broker extensions on, against PostgreSQL.

Two figures per side, each measured the same way for both:
* enqueue: jobs recorded and sent per second from one process (Conveyor
  writes a Job row per job; plain Dramatiq only talks to Redis);
* processing: the queue is filled first, then the workers start, and the
  rate is taken from the first job started to the last one finished.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on the path, where bench/email.py
# would shadow the standard library's email package: the project root instead.
sys.path[0] = str(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("DRAMATIQ_NAMESPACE", "conveyor-bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("BENCH_REDIS_URL", os.environ["REDIS_URL"])

from bench.processes import start_logged, stop, stop_children_at_exit  # noqa: E402 - needs the project root on the path


def bench_plain(jobs: int, processes: int, threads: int, prefetch: int) -> tuple[float, float]:
    from bench import plain_dramatiq_app as app

    for key in app.broker.client.scan_iter("bench-plain:*"):
        app.broker.client.delete(key)
    started = time.monotonic()
    for _ in range(jobs):
        app.noop.send()
    enqueue_rate = jobs / (time.monotonic() - started)
    proc = start_logged(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "bench.plain_dramatiq_app",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--queues",
            "bench",
        ],
        ROOT / "var" / "bench-plain.log",
        {**os.environ, "dramatiq_queue_prefetch": str(prefetch)},
    )
    deadline = time.monotonic() + 300
    while app.broker.do_qsize("bench") >= jobs:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the plain Dramatiq workers did not start; see var/bench-plain.log")
        time.sleep(0.001)
    first = time.monotonic()
    while app.broker.do_qsize("bench") > 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the plain Dramatiq workers stalled; see var/bench-plain.log")
        time.sleep(0.005)
    processing_rate = jobs / (time.monotonic() - first)
    stop(proc)
    return enqueue_rate, processing_rate


def bench_conveyor(jobs: int, processes: int, threads: int, prefetch: int) -> tuple[float, float]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.db.models import Max, Min

    from jobs.dispatch.services import build_job, create_jobs
    from jobs.models import Job, JobStatus

    call_command("migrate", verbosity=0)
    Job.objects.filter(queue="maintenance").delete()
    args = {"queue": "maintenance", "seconds": 0, "steps": 1, "fail": False}
    started = time.monotonic()
    for first in range(0, jobs, 1000):
        with transaction.atomic():
            create_jobs(
                [
                    build_job(job_type="canary", queue="maintenance", actor="canary_maintenance", arguments=args)
                    for _ in range(min(1000, jobs - first))
                ]
            )
    enqueue_rate = jobs / (time.monotonic() - started)
    # Each run deletes and re-inserts its jobs: without a vacuum the table
    # carried every earlier run's dead rows (160,000 after a few runs, for
    # 20,000 live ones) and the workers' index lookups waded through them.
    # Autovacuum keeps a live table far below that; this stands in for it.
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Job._meta.db_table}")
    env = {
        **os.environ,
        "QUEUE_MAINTENANCE_PROCESSES": str(processes),
        "QUEUE_MAINTENANCE_THREADS": str(threads),
        "QUEUE_MAINTENANCE_PREFETCH": str(prefetch),
        "dramatiq_queue_prefetch": str(prefetch),
    }
    proc = start_logged(
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
        ROOT / "var" / "bench-conveyor.log",
        env,
    )
    deadline = time.monotonic() + 600
    while Job.objects.filter(queue="maintenance", status=JobStatus.COMPLETED).count() < jobs:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the Conveyor workers stopped or stalled; see var/bench-conveyor.log")
        # Counting 20,000 rows costs PostgreSQL CPU the workers want: not too often.
        time.sleep(1)
    stop(proc)
    span = Job.objects.filter(queue="maintenance").aggregate(Min("started_at"), Max("finished_at"))
    seconds = (span["finished_at__max"] - span["started_at__min"]).total_seconds()
    return enqueue_rate, jobs / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="messages each worker process holds, for both sides (default: Dramatiq's, 2 x threads)",
    )
    args = parser.parse_args()
    prefetch = args.prefetch or 2 * args.threads
    stop_children_at_exit()  # a failed or interrupted run leaves no worker behind
    plain_enqueue, plain = bench_plain(args.jobs, args.processes, args.threads, prefetch)
    conveyor_enqueue, conveyor = bench_conveyor(args.jobs, args.processes, args.threads, prefetch)
    print(f"{args.jobs} no-op jobs, {args.processes} processes x {args.threads} threads, prefetch {prefetch}")
    print(
        f"enqueue    plain dramatiq {plain_enqueue:8.0f}/s   conveyor {conveyor_enqueue:8.0f}/s"
        f"   ratio {conveyor_enqueue / plain_enqueue:.2f}"
    )
    print(
        f"processing plain dramatiq {plain:8.0f}/s   conveyor {conveyor:8.0f}/s"
        f"   ratio {conveyor / plain:.2f} (target >= 0.80)"
    )


if __name__ == "__main__":
    main()
