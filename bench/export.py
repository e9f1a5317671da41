"""Exports: PostgreSQL's own COPY versus the csv-export job (CSV and Excel), 100k and 1M rows.

    .venv/bin/python bench/export.py [--sizes 100000 1000000] [--formats csv xlsx]

For each size, a table of that many finished jobs (one ``INSERT ... SELECT
generate_series``) is exported three ways, with the same SELECT:

- baseline: ``COPY (SELECT ...) TO STDOUT WITH CSV`` through psycopg into a
  file, in this process;
- the ``csv-export`` job, CSV and XLSX, run by a real ``rundramatiq`` worker
  for the csv-export queue; its time is the job's own run (started to
  finished: child process start-up included), its memory the peak resident
  memory of the export's child process as the platform measured it.

It uses its own database (``bench_exports``), Redis database 14 and key
prefix, and files under var/bench-exports (deleted at the end).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/email.py would shadow the standard library
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_exports")
os.environ.setdefault("DRAMATIQ_NAMESPACE", "conveyor-bench-exports")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("MEDIA_ROOT", str(ROOT / "var" / "bench-exports"))

from bench.databases import ensure_database  # noqa: E402 - needs the project root on the path
from bench.processes import stop  # noqa: E402 - needs the project root on the path


def _seed(owner_id: int, rows: int, job_type: str) -> None:
    from django.db import connection

    from jobs.models import Job

    table = Job._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE type = %s", [job_type])
        cursor.execute(
            f"""
            INSERT INTO {table} (
                id, type, queue, actor, arguments, owner_id, priority, status, progress, progress_data,
                error_message, traceback, attempts, max_attempts, worker_id, created_at, started_at,
                finished_at, updated_at
            )
            SELECT gen_random_uuid(), %s, 'maintenance', 'bench', '{{}}'::jsonb, %s, 'normal',
                   CASE WHEN mod(n, 10) = 0 THEN 'failed' ELSE 'completed' END, 100, '{{}}'::jsonb,
                   CASE WHEN mod(n, 10) = 0 THEN 'row ' || n || ' failed, "badly"' ELSE '' END, '', 1, 1, '',
                   now() - n * interval '1 second', now() - n * interval '1 second',
                   now() - n * interval '1 second' + mod(n, 7) * interval '1 second',
                   now() - n * interval '1 second'
            FROM generate_series(1, %s) AS n
            """,
            [job_type, owner_id, rows],
        )
        # Sets hint bits and the visibility map: the first reader does not pay for the insert.
        cursor.execute(f"VACUUM ANALYZE {table}")


def _copy_baseline(user: Any, job_type: str, target: Path, *, jit: bool) -> tuple[float, int]:
    """Seconds and rows for COPY of the jobs dataset's own SELECT (same SQL and values as the job), to a file.

    ``jit``: PostgreSQL's JIT compiler on (the server's default) or off (as the job runs it).
    """
    from django.db import connection

    from exports.services import validate_export_request

    dataset, query = validate_export_request(user, {"dataset": "jobs", "filters": {"type": job_type}})
    sql, params = dataset.select_sql(query, owner_id=user.pk, vendor="postgresql", quote=connection.ops.quote_name)
    connection.ensure_connection()
    raw = connection.connection
    raw.execute(f"SET jit = {'on' if jit else 'off'}")
    started = time.perf_counter()
    rows = -1
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)", params) as copy,
        open(target, "wb", buffering=1 << 20) as out,
    ):
        for piece in copy:
            out.write(piece)
            rows += 1
    return time.perf_counter() - started, rows


def _run_job(user: Any, job_type: str, export_format: str, timeout: float) -> dict[str, Any]:
    from django.db import transaction

    from exports.job_types import CSV_EXPORT
    from exports.models import Export
    from jobs.dispatch.services import start_job
    from jobs.models import JobStatus

    with transaction.atomic():
        job = start_job(
            CSV_EXPORT,
            user,
            {"query_params": {"dataset": "jobs", "filters": {"type": job_type}}, "format": export_format},
        ).job
    deadline = time.monotonic() + timeout
    while True:
        job.refresh_from_db()
        if job.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job.id} still {job.status} after {timeout} s")
        time.sleep(0.2)
    export = Export.objects.get(job=job)
    assert job.started_at and job.finished_at
    # The job's own run, from its claim to its completion (child start-up, count and file included).
    seconds = (job.finished_at - job.started_at).total_seconds()
    return {
        "status": job.status,
        "error": job.error_message,
        "seconds": seconds,
        "rows": export.row_count or 0,
        "peak_mb": export.peak_memory_mb or 0.0,
        "size_mb": (export.size_bytes or 0) / 1e6,
        "attempts": job.attempts,
    }


def _forget_earlier_runs() -> None:
    """An interrupted run leaves its export job queued: cancel it and empty the bench's Redis keys."""
    import redis

    from jobs.models import ACTIVE_STATUSES, Job
    from jobs.state import transitions

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    for key in client.scan_iter(match=f"{os.environ['DRAMATIQ_NAMESPACE']}:*", count=1000):
        client.delete(key)
    client.close()
    for job_id in Job.objects.filter(type="csv-export", status__in=ACTIVE_STATUSES).values_list("id", flat=True):
        transitions.mark_cancelled(str(job_id), "left over from an interrupted benchmark")


def _start_worker() -> subprocess.Popen[bytes]:
    log = open(ROOT / "var" / "bench-export-worker.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "rundramatiq",
            "--processes",
            "1",
            "--threads",
            "1",
            "--queues",
            "csv-export",
        ],
        cwd=ROOT,
        env={**os.environ, "dramatiq_queue_prefetch": "1"},
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", choices=["csv", "xlsx"], default=["csv", "xlsx"])
    parser.add_argument(
        "--time-limit", help="override the csv-export queue's time limit (seconds, or none) for this run"
    )
    args = parser.parse_args()
    if args.time_limit:
        os.environ["QUEUE_CSV_EXPORT_TIME_LIMIT"] = args.time_limit

    ensure_database()
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench-exports")
    media = Path(os.environ["MEDIA_ROOT"])
    media.mkdir(parents=True, exist_ok=True)
    _forget_earlier_runs()
    worker = _start_worker()
    results: list[str] = []
    try:
        time.sleep(5)  # let the worker boot
        for size in args.sizes:
            job_type = f"bench-{size}"
            _seed(user.pk, size, job_type)
            # The best of three runs with JIT on and three with it off: the
            # baseline gets every chance (the machine is shared, and the job
            # turns JIT off, which saves ~0.1 s of compiling at 100k rows).
            timings = [
                _copy_baseline(user, job_type, media / "baseline.csv", jit=jit)
                for jit in (True, False)
                for _ in range(3)
            ]
            assert all(rows == size for _, rows in timings), (timings, size)
            copy_s = min(seconds for seconds, _ in timings)
            copy_rate = size / copy_s
            results.append(
                f"{size:>9,} rows  COPY baseline      {copy_rate:>10,.0f} rows/s  {copy_s:6.2f} s "
                f"(best of 3 with JIT on, {min(s for s, _ in timings[:3]):.2f} s, and 3 with JIT off, "
                f"{min(s for s, _ in timings[3:]):.2f} s)"
            )
            print(results[-1], flush=True)
            for export_format in args.formats:
                # CSV, like the baseline, the best of three runs; an XLSX export takes minutes.
                runs = [
                    _run_job(user, job_type, export_format, timeout=900)
                    for _ in range(3 if export_format == "csv" else 1)
                ]
                run = min(runs, key=lambda r: (r["status"] != "completed", r["seconds"]))
                if run["status"] != "completed":
                    line = f"{size:>9,} rows  job {export_format:<4} FAILED: {run['error']}"
                else:
                    assert run["rows"] == size, (run["rows"], size)
                    rate = size / run["seconds"]
                    ratio = f"ratio {rate / copy_rate:4.2f} of COPY (target >= 0.5)" if export_format == "csv" else ""
                    line = (
                        f"{size:>9,} rows  job {export_format:<4}          {rate:>10,.0f} rows/s  "
                        f"{run['seconds']:6.2f} s  peak {run['peak_mb']:5.1f} MB  "
                        f"file {run['size_mb']:6.1f} MB  {ratio}"
                    )
                results.append(line)
                print(line, flush=True)
    finally:
        stop(worker)
        shutil.rmtree(media, ignore_errors=True)
    print("\nsummary (peak memory target: under 100 MB and the same for both sizes)")
    print("\n".join(results))


if __name__ == "__main__":
    main()
