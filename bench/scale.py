"""The console, the API list, health and the monthly cleanup with 2,000,000 jobs, next to 2,000.

    .venv/bin/python bench/scale.py [--reuse] [--jobs 2000000] [--small 2000] [--rounds 5] [--skip-cleanup]

Seeds two databases of the same mix (``bench_scale``: ``--jobs`` rows;
``bench_scale_small``: ``--small`` rows) with ``INSERT ... SELECT
generate_series`` (the table's indexes dropped during the insert and built
after it, then ``VACUUM ANALYZE`` as autovacuum would have): top-level jobs
of every type and queue created over 90 days, a tenth of them fan-out
parents with two children each, about 7 % failed with a realistic error text
(and an attempt row), 2 % cancelled, the last minutes still waiting or
running, 200 owners (a few big ones). ``--reuse`` keeps databases that are
already seeded (they are migrated, which adds new indexes).

Each figure is a real request through Django's test client (the whole
middleware stack, session of a staff user), the median of ``--rounds``
after one warm-up, for the large and the small table. The cleanup runs on a
copy of the large database (``CREATE DATABASE ... TEMPLATE``): it deletes
about half of it, the jobs finished more than 45 days ago, while a writer
inserts jobs and moves recent ones through their states; it prints the
longest batch (its transaction, so the longest any row lock of the delete is
held) and the writer's worst write.

Needs PostgreSQL (``BENCH_PG``, default ``postgres://postgres@127.0.0.1:5432``)
and Redis (``REDIS_URL``, default database 14; health reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on the path, where bench/email.py
# would shadow the standard library's email package: the project root instead.
sys.path[0] = str(ROOT)

PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
LARGE_DB = "bench_scale"
SMALL_DB = "bench_scale_small"
CLEANUP_DB = "bench_scale_cleanup"
OWNERS = 200
DAYS = 90
#: The cleanup's retention in the bench: about half of jobs created over DAYS days are older.
CLEANUP_RETENTION_DAYS = 45
STAFF = "bench-staff"

#: (type, queue, actor, share of top-level jobs in per mille, is a fan-out parent type).
TYPES = [
    ("canary", "maintenance", "canary", 300),
    ("thumbnails-document", "thumbnails", "make_document_thumbnails", 250),
    ("pdf-ocr", "pdf-processing", "ocr_document", 125),
    ("email-batch", "email-sender", "send_campaign", 125),
    ("thumbnails", "thumbnails", "make_thumbnails", 100),
    ("csv-export", "csv-export", "csv_export", 60),
    ("email-digest", "email-sender", "send_daily_digest", 30),
    ("thumbnail-maintenance", "thumbnails", "maintain_thumbnails", 9),
    ("cleanup", "maintenance", "run_cleanup", 1),
]
#: Canaries (the first type) go one per queue.
QUEUES = ["pdf-processing", "email-sender", "csv-export", "thumbnails", "maintenance"]
#: Children of the fan-out parents (pdf-ocr and email-batch).
CHILD_TYPES = {"pdf-ocr": ("pdf-ocr-pages", "ocr_page_range"), "email-batch": ("email-batch-part", "send_email_batch")}
ERRORS = [
    "timed out after 600 s",
    "CorruptPdf: xref table not found in document {n}",
    "SMTPRecipientsRefused: 550 mailbox unavailable for user{n}@example.com",
    "ExportTooLarge: the export passed 256 MB at row {n}",
    "OcrFailed: tesseract exited with status 1 on page {n}",
    "ConnectionError: could not reach the storage bucket (attempt {n})",
]
SEARCH_ERROR = "mailbox unavailable for user4242@"


def _psql(database: str, sql: str, params: tuple[Any, ...] = (), *, autocommit: bool = True) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(f"{PG}/{database}", autocommit=autocommit) as conn:
        cursor = conn.execute(sql.encode() if not params else sql, params or None)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def _database_exists(name: str) -> bool:
    return bool(_psql("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))


def _recreate_database(name: str, template: str | None = None) -> None:
    _psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    suffix = f' TEMPLATE "{template}"' if template else ""
    _psql("postgres", f'CREATE DATABASE "{name}"{suffix}')


def _env(database: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": f"{PG}/{database}",
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
            "DRAMATIQ_NAMESPACE": os.environ.get("DRAMATIQ_NAMESPACE", "conveyor-bench"),
        }
    )
    return env


def _migrate(database: str) -> None:
    subprocess.check_call(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=_env(database)
    )


def _type_case(column: str, pick: str) -> str:
    """SQL CASE choosing TYPES[*][column] by ``pick`` (0..999) against the per-mille shares."""
    index = {"type": 0, "queue": 1, "actor": 2}[column]
    parts, bound = [], 0
    for row in TYPES:
        bound += row[3]
        parts.append(f"WHEN {pick} < {bound} THEN '{row[index]}'")
    return "CASE " + " ".join(parts) + f" ELSE '{TYPES[-1][index]}' END"


def seed(database: str, jobs: int) -> None:
    """``jobs`` rows: 80 % top-level (an eighth of them fan-out parents), 20 % their children, two each."""
    print(f"seeding {database} with {jobs:,} jobs ...", flush=True)
    started = time.monotonic()
    _recreate_database(database)
    _migrate(database)
    indexes = _psql(
        database,
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs_job' AND indexname NOT LIKE '%%pkey'",
        (),
    )
    for name, _ in indexes:
        _psql(database, f'DROP INDEX "{name}"')
    parents = jobs // 10
    top = jobs - 2 * parents
    errors = "ARRAY[" + ", ".join("'" + text.replace("'", "''") + "'" for text in ERRORS) + "]"
    queues = ", ".join(f"'{name}'" for name in QUEUES)
    fanout = " OR ".join(f"t.type = '{name}'" for name in CHILD_TYPES)
    statements = [
        # Owners: usernames bench-owner-N, unusable passwords.
        f"""
        INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,
                               is_active, date_joined)
        SELECT '!', false, 'bench-owner-' || n, '', '', '', false, true, now() - interval '{DAYS + 30} days'
        FROM generate_series(1, {OWNERS}) AS n
        """,
        # Top-level jobs. n / top spreads created_at over DAYS days (oldest first, as a table grows);
        # pick (0..999) chooses the type; every eighth row of a fan-out type is made a parent below.
        f"""
        CREATE UNLOGGED TABLE bench_seed AS
        SELECT n,
               now() - interval '{DAYS} days' * (1 - n::float8 / {top}) AS created_at,
               abs(hashtext('pick' || n)) % 1000 AS pick,
               abs(hashtext('fate' || n)) % 1000 AS fate
        FROM generate_series(1, {top}) AS n
        """,
        f"""
        CREATE UNLOGGED TABLE bench_top AS
        SELECT s.n, gen_random_uuid() AS id, {_type_case("type", "s.pick")} AS type,
               CASE WHEN s.pick < {TYPES[0][3]} THEN (ARRAY[{queues}])[1 + s.n % {len(QUEUES)}]
                    ELSE {_type_case("queue", "s.pick")} END AS queue,
               CASE WHEN s.pick < {TYPES[0][3]}
                    THEN 'canary_' || replace((ARRAY[{queues}])[1 + s.n % {len(QUEUES)}], '-', '_')
                    ELSE {_type_case("actor", "s.pick")} END AS actor,
               s.created_at,
               CASE WHEN s.created_at > now() - interval '2 minutes' THEN
                        (ARRAY['queued', 'active', 'retrying', 'scheduled', 'completed'])[1 + s.fate % 5]
                    WHEN s.fate < 70 THEN 'failed'
                    WHEN s.fate < 90 THEN 'cancelled'
                    ELSE 'completed' END AS status,
               s.fate
        FROM bench_seed s
        """,
        f"""
        INSERT INTO jobs_job (id, type, queue, actor, arguments, owner_id, priority, status, progress,
                              progress_data, result, error_message, traceback, attempts, max_attempts, worker_id,
                              created_at, started_at, finished_at, updated_at, parent_id)
        SELECT t.id, t.type, t.queue, t.actor,
               jsonb_build_object('document_id', t.n, 'pages', 1 + t.n % 40, 'note', 'batch ' || (t.n % 977)),
               CASE WHEN t.type IN ('canary', 'cleanup', 'thumbnail-maintenance') THEN NULL
                    WHEN t.fate < 400 THEN (SELECT min(id) FROM auth_user WHERE username LIKE 'bench-owner-%%')
                                           + t.fate % 5
                    ELSE (SELECT min(id) FROM auth_user WHERE username LIKE 'bench-owner-%%')
                         + (t.n * 31) % {OWNERS} END,
               CASE WHEN t.fate % 10 = 0 THEN 'high' ELSE 'normal' END,
               t.status,
               CASE WHEN t.status IN ('completed', 'failed') THEN 100 WHEN t.status = 'active' THEN 40 ELSE 0 END,
               '{{}}'::jsonb,
               CASE WHEN t.status = 'completed' THEN jsonb_build_object('pages', 1 + t.n % 40) END,
               CASE WHEN t.status IN ('failed', 'retrying') THEN
                        replace(({errors})[1 + t.n % {len(ERRORS)}], '{{n}}', (t.n % 10000)::text)
                    WHEN t.status = 'cancelled' THEN 'cancelled before it ran'
                    ELSE '' END,
               CASE WHEN t.status = 'failed' THEN
                        'Traceback (most recent call last):' || chr(10) || '  File "jobs/worker/run.py", line 88'
                        || chr(10) || repeat('    frame ', 20)
                    ELSE '' END,
               CASE WHEN t.status IN ('queued', 'scheduled') THEN 0 WHEN t.status = 'failed' THEN 3 ELSE 1 END,
               3,
               CASE WHEN t.status = 'active' THEN 'bench-worker-1' ELSE '' END,
               t.created_at,
               CASE WHEN t.status NOT IN ('queued', 'scheduled') THEN t.created_at + interval '1 second' END,
               CASE WHEN t.status IN ('completed', 'failed', 'cancelled')
                    THEN t.created_at + (1 + t.n % 60) * interval '1 second' END,
               t.created_at + (1 + t.n % 60) * interval '1 second',
               NULL
        FROM bench_top t
        """,
        # Fan-out parents: every eighth top-level row of a fan-out type, up to `parents` of them.
        f"""
        CREATE UNLOGGED TABLE bench_parents AS
        SELECT t.id, t.type, t.queue, t.created_at, t.status, t.n, j.owner_id
        FROM bench_top t JOIN jobs_job j ON j.id = t.id
        WHERE {fanout}
        ORDER BY t.n % 2, t.n
        LIMIT {parents}
        """,
        f"""
        INSERT INTO jobs_job (id, type, queue, actor, arguments, owner_id, priority, status, progress,
                              progress_data, error_message, traceback, attempts, max_attempts, worker_id,
                              created_at, started_at, finished_at, updated_at, parent_id)
        SELECT gen_random_uuid(),
               CASE p.type {" ".join(f"WHEN '{k}' THEN '{v[0]}'" for k, v in CHILD_TYPES.items())} END,
               p.queue,
               CASE p.type {" ".join(f"WHEN '{k}' THEN '{v[1]}'" for k, v in CHILD_TYPES.items())} END,
               jsonb_build_object('parent_n', p.n, 'part', c),
               p.owner_id, 'normal',
               CASE WHEN p.status = 'failed' AND c = 1 THEN 'failed'
                    WHEN p.status = 'failed' THEN 'completed'
                    ELSE p.status END,
               CASE WHEN p.status IN ('completed', 'failed') THEN 100 ELSE 0 END,
               '{{}}'::jsonb,
               CASE WHEN p.status = 'failed' AND c = 1 THEN 'OcrFailed: tesseract exited with status 1 on page '
                                                          || (p.n % 10000)::text
                    WHEN p.status = 'cancelled' THEN 'cancelled before it ran' ELSE '' END,
               '', 1, 3, '',
               p.created_at + interval '1 second',
               CASE WHEN p.status NOT IN ('queued', 'scheduled') THEN p.created_at + interval '2 seconds' END,
               CASE WHEN p.status IN ('completed', 'failed', 'cancelled')
                    THEN p.created_at + (1 + p.n % 60) * interval '1 second' END,
               p.created_at + (1 + p.n % 60) * interval '1 second',
               p.id
        FROM bench_parents p CROSS JOIN generate_series(1, 2) AS c
        """,
        # One attempt row per failed or retrying job, and per fiftieth completed one (it was retried).
        """
        INSERT INTO jobs_jobattempt (job_id, number, outcome, error, worker_id, started_at, finished_at)
        SELECT id, 1, 'failed', CASE WHEN error_message = '' THEN 'ConnectionError: reset by peer'
                                     ELSE error_message END,
               'bench-worker-1', started_at, COALESCE(started_at, created_at) + interval '1 second'
        FROM jobs_job
        WHERE status IN ('failed', 'retrying') OR (status = 'completed' AND hashtext(id::text) % 50 = 0)
        """,
        "DROP TABLE bench_seed, bench_top, bench_parents",
    ]
    import psycopg

    with psycopg.connect(f"{PG}/{database}", autocommit=True) as conn:
        # No foreign-key trigger per row: the seed's keys are right by construction.
        conn.execute(b"SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement.encode())
    for _, definition in indexes:
        _psql(database, definition)
    _psql(database, "VACUUM ANALYZE jobs_job")
    _psql(database, "VACUUM ANALYZE jobs_jobattempt")
    _psql(database, "VACUUM ANALYZE auth_user")
    count = _psql(database, "SELECT count(*) FROM jobs_job")[0][0]
    print(f"  {count:,} jobs in {time.monotonic() - started:.0f} s", flush=True)


def ensure_seeded(database: str, jobs: int, reuse: bool) -> None:
    if reuse and _database_exists(database):
        count = _psql(database, "SELECT reltuples::bigint FROM pg_class WHERE relname = 'jobs_job'")
        if count and count[0][0] > 0.9 * jobs:
            _migrate(database)
            print(f"reusing {database} (about {count[0][0]:,} jobs)", flush=True)
            return
    seed(database, jobs)


def _setup_django(database: str) -> None:
    os.environ.update(_env(database))
    import django

    django.setup()
    from django.conf import settings

    # The pages' static links without a collectstatic manifest (as the tests do): the figures are the views'.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def _staff_client() -> Any:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username=STAFF, defaults={"is_staff": True, "is_superuser": True, "password": "!"}
    )
    client = Client()
    client.force_login(user)
    return client


def _requests() -> dict[str, str]:
    """Label -> URL, with an id and an id's start taken from the table (an old failed job)."""
    from jobs.models import Job, JobStatus

    old_failed = Job.objects.filter(status=JobStatus.FAILED, parent__isnull=True).order_by("created_at").first()
    job_id = str(old_failed.pk) if old_failed else "00000000-0000-0000-0000-000000000000"
    changelist = "/admin/jobs/job/"
    return {
        "changelist": changelist,
        "status filter (failed)": changelist + "?status__exact=failed",
        "status filter (completed)": changelist + "?status__exact=completed",
        "type filter (csv-export)": changelist + "?type=csv-export",
        "type filter (cleanup, rare)": changelist + "?type=cleanup",
        "search by id": changelist + "?q=" + job_id,
        "search by id's first 8 characters": changelist + "?q=" + job_id[:8],
        "search by error text (rare)": changelist + "?q=" + SEARCH_ERROR.replace("@", "%40"),
        "search by error text (common)": changelist + "?q=timed+out",
        "API list": "/api/jobs",
        "API list, status filter": "/api/jobs?status=failed",
        "API list, type filter": "/api/jobs?type=csv-export",
    }


def _timed(client: Any, url: str, rounds: int, before: Any = None) -> float:
    """Median seconds of ``rounds`` requests after one warm-up (``before`` runs ahead of each, untimed)."""
    times = []
    for index in range(rounds + 1):
        if before is not None:
            before()
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
        if response.status_code not in (200, 503):  # 503: health without workers, still a full report
            raise SystemExit(f"{url} answered {response.status_code}")
        if index:
            times.append(elapsed)
    return statistics.median(times)


def measure(database: str, rounds: int) -> dict[str, float]:
    """Median request times (s) against ``database``, in this process."""
    _setup_django(database)
    from jobs.ops.health import forget_cached_health_report

    client = _staff_client()
    figures = {label: _timed(client, url, rounds) for label, url in _requests().items()}
    figures["health, computed"] = _timed(client, "/workers/health", rounds, before=forget_cached_health_report)
    figures["health, kept (<= 1 s)"] = _timed(client, "/workers/health", rounds)
    return figures


class Writer(threading.Thread):
    """Writes as the platform does while the cleanup runs, timing each statement (its own connection).

    Each round: a new job inserted, moved to active and to completed, and a
    retry-like update of an old failed job that the cleanup may be deleting at
    that moment (that update waits for the batch holding the row's lock).
    """

    def __init__(self, database: str, old_ids: list[Any]) -> None:
        super().__init__(daemon=True)
        self.database, self.old_ids = database, old_ids
        self.stop = threading.Event()
        self.latencies: list[float] = []

    def run(self) -> None:
        import uuid

        import psycopg

        with psycopg.connect(f"{PG}/{self.database}", autocommit=True) as conn:
            index = 0
            while not self.stop.is_set():
                job_id = uuid.uuid4()
                old_id = self.old_ids[index % len(self.old_ids)]
                index += 1
                statements: list[tuple[str, tuple[Any, ...]]] = [
                    (
                        "INSERT INTO jobs_job (id, type, queue, actor, arguments, priority, status, progress,"
                        " progress_data, error_message, traceback, attempts, max_attempts, worker_id, created_at,"
                        " updated_at) VALUES (%s, 'canary', 'maintenance', 'canary', '{}', 'normal', 'queued', 0,"
                        " '{}', '', '', 0, 1, '', now(), now())",
                        (job_id,),
                    ),
                    (
                        "UPDATE jobs_job SET status = 'active', started_at = now(), updated_at = now()"
                        " WHERE id = %s AND status = 'queued'",
                        (job_id,),
                    ),
                    (
                        "UPDATE jobs_job SET status = 'completed', finished_at = now(), updated_at = now()"
                        " WHERE id = %s AND status = 'active'",
                        (job_id,),
                    ),
                    ("UPDATE jobs_job SET updated_at = now() WHERE id = %s AND status = 'failed'", (old_id,)),
                ]
                for sql, params in statements:
                    started = time.perf_counter()
                    conn.execute(sql, params)  # type: ignore[arg-type]
                    self.latencies.append(time.perf_counter() - started)
                time.sleep(0.005)


def measure_cleanup(database: str) -> dict[str, Any]:
    """Prune the jobs finished over CLEANUP_RETENTION_DAYS ago from ``database`` while a Writer writes."""
    _setup_django(database)
    from django.conf import settings

    from jobs.ops.scheduling.cleanup import prune_finished_jobs_in_batches

    def counts() -> tuple[int, int]:
        jobs = _psql(database, "SELECT count(*) FROM jobs_job")[0][0]
        attempts = _psql(database, "SELECT count(*) FROM jobs_jobattempt")[0][0]
        return jobs, attempts

    old_ids = [
        row[0]
        for row in _psql(
            database,
            "SELECT id FROM jobs_job WHERE status = 'failed' AND parent_id IS NULL"
            f" AND finished_at < now() - interval '{CLEANUP_RETENTION_DAYS} days' ORDER BY finished_at LIMIT 20000",
        )
    ][::10]
    jobs_before, attempts_before = counts()
    idle = Writer(database, old_ids)
    idle.start()
    time.sleep(3)
    idle.stop.set()
    idle.join()
    writer = Writer(database, old_ids)
    writer.start()
    started = time.monotonic()
    report = prune_finished_jobs_in_batches(retention_days=CLEANUP_RETENTION_DAYS)
    elapsed = time.monotonic() - started
    writer.stop.set()
    writer.join()
    jobs_after, attempts_after = counts()
    inserted = len(writer.latencies) // 4 + len(idle.latencies) // 4
    return {
        "batch_size": settings.JOBS_CLEANUP_BATCH,
        "top_level_deleted": report.deleted,
        "jobs_deleted": jobs_before + inserted - jobs_after,
        "attempts_deleted": attempts_before - attempts_after,
        "batches": report.batches,
        "longest_batch_s": report.longest_batch_s,
        "batch_median_s": statistics.median(report.batch_seconds),
        "batch_p99_s": statistics.quantiles(report.batch_seconds, n=100)[98],
        "batches_over_1s": sum(seconds > 1 for seconds in report.batch_seconds),
        "total_s": elapsed,
        "writer_statements": len(writer.latencies),
        "writer_worst_s": max(writer.latencies),
        "writer_p99_s": statistics.quantiles(writer.latencies, n=100)[98],
        "writer_median_s": statistics.median(writer.latencies),
        "writer_idle_worst_s": max(idle.latencies),
        "writer_idle_median_s": statistics.median(idle.latencies),
    }


def _child(*args: str) -> Any:
    """Run this script's ``args`` in a fresh process (one database per Django process); its JSON answer."""
    out = subprocess.check_output([sys.executable, str(Path(__file__).resolve()), *args], cwd=ROOT)
    return json.loads(out.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", action="store_true", help="keep databases that are already seeded")
    parser.add_argument("--jobs", type=int, default=2_000_000)
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed-only", action="store_true")
    parser.add_argument("--skip-cleanup", action="store_true")
    parser.add_argument("--skip-lists", action="store_true", help="only the cleanup")
    parser.add_argument("--measure", metavar="DATABASE", help=argparse.SUPPRESS)
    parser.add_argument("--cleanup", metavar="DATABASE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.rounds)))
        return
    if args.cleanup:
        print(json.dumps(measure_cleanup(args.cleanup)))
        return
    ensure_seeded(SMALL_DB, args.small, args.reuse)
    ensure_seeded(LARGE_DB, args.jobs, args.reuse)
    if args.seed_only:
        return
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    if not args.skip_lists:
        small = _child("--measure", SMALL_DB, "--rounds", str(args.rounds))
        large = _child("--measure", LARGE_DB, "--rounds", str(args.rounds))
        print(f"\nmedian of {args.rounds} requests (Django test client, staff session), seconds")
        print(f"| request | {args.small:,} jobs | {args.jobs:,} jobs | target at {args.jobs:,} |")
        print("|---|---|---|---|")
        for label, seconds in large.items():
            target = "<= 0.3 s" if not label.startswith("health") and "common" not in label else ""
            verdict = "" if not target else (" PASS" if seconds <= 0.3 else " FAIL")
            print(f"| {label} | {small[label]:.3f} | {seconds:.3f} | {target}{verdict} |")
    if args.skip_cleanup:
        return
    print(f"\ncleanup: copying {LARGE_DB} ...", flush=True)
    _recreate_database(CLEANUP_DB, template=LARGE_DB)
    try:
        result = _child("--cleanup", CLEANUP_DB)
    finally:
        _psql("postgres", f'DROP DATABASE IF EXISTS "{CLEANUP_DB}" WITH (FORCE)')
    print(
        f"cleanup of jobs finished over {CLEANUP_RETENTION_DAYS} days ago, batches of {result['batch_size']:,}:"
        f" {result['top_level_deleted']:,} top-level jobs ({result['jobs_deleted']:,} rows with their children,"
        f" {result['attempts_deleted']:,} attempts) in {result['batches']:,} batches, {result['total_s']:.1f} s;"
        f" batch (transaction, so row locks) median {result['batch_median_s']:.3f} s,"
        f" p99 {result['batch_p99_s']:.3f} s, longest {result['longest_batch_s']:.3f} s"
        f" ({'PASS' if result['longest_batch_s'] <= 1 else 'FAIL'} <= 1 s; {result['batches_over_1s']} over 1 s)"
    )
    print(
        f"concurrent writer ({result['writer_statements']:,} statements): worst {result['writer_worst_s']:.3f} s,"
        f" p99 {result['writer_p99_s']:.3f} s, median {result['writer_median_s'] * 1000:.1f} ms;"
        f" before the cleanup: worst {result['writer_idle_worst_s']:.3f} s,"
        f" median {result['writer_idle_median_s'] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
