"""Thumbnail maintenance over 100,000 documents: real worker, real Redis, its own database.

    .venv/bin/python bench/thumbnail_maintenance.py [--documents 100000] [--missing 400] [--batch 2000]

Seeds ``--documents`` document rows in one ``INSERT ... SELECT
generate_series`` (every status; all but ``--missing`` of them with every
thumbnail recorded, those few with none, their file a real one-page PDF),
then fires the "thumbnail maintenance" schedule ("run now", the nightly
path) with a ``rundramatiq`` pool for the thumbnails queue as the queue
table sizes it. It waits for the pass to finish and for the thumbnails
jobs it started, then prints: the walk's time (the pass's start to its
end), the maintenance runs and batches, the largest batch's time and the
longest maintenance run against the queue's time limit, how many documents
were sent for repair and how many have every thumbnail now, and how long
that took.

Its own database (``bench_thumbnail_maintenance``), Redis database 14 and
key prefix (``REDIS_URL``, ``DRAMATIQ_NAMESPACE`` override them), files under
var/bench-thumbnail-maintenance (deleted at the end). Not a test: the
figures move with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/email.py would shadow the standard library
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_thumbnail_maintenance")
os.environ.setdefault("DRAMATIQ_NAMESPACE", "conveyor-bench-thumbnail-maintenance")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("MEDIA_ROOT", str(ROOT / "var" / "bench-thumbnail-maintenance"))

from bench.databases import ensure_database  # noqa: E402 - needs the project root on the path
from bench.processes import start_logged, stop  # noqa: E402 - needs the project root on the path

SOURCE_PDF = "documents/bench/source.pdf"
MAINTENANCE_TYPE = "thumbnail-maintenance"


def _forget_earlier_runs() -> None:
    """Empty the bench's Redis keys and its documents, passes and jobs (its own database)."""
    import redis
    from django.db import connection

    from documents.models import Document, DocumentPage, ThumbnailMaintenancePass
    from jobs.models import Job
    from jobs.models.schedule import ScheduleFire

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    for key in client.scan_iter(match=f"{os.environ['DRAMATIQ_NAMESPACE']}:*", count=1000):
        client.delete(key)
    client.close()
    tables = [model._meta.db_table for model in (DocumentPage, Document, ThumbnailMaintenancePass, ScheduleFire, Job)]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


def _seed(owner_id: int, documents: int, missing: int) -> None:
    """``documents`` rows in one statement; every ``documents // missing``-th has no thumbnail."""
    from django.conf import settings
    from django.db import connection

    from documents.models import Document

    every = max(1, documents // max(1, missing))
    sizes = [str(size) for size in settings.THUMBNAIL_SIZES]
    # jsonb_build_object('150', 'thumbnails/<id>/150.png', ...) for the documents that have them.
    pairs = ", ".join(f"'{size}', 'thumbnails/' || replace(id::text, '-', '') || '/{size}.png'" for size in sizes)
    table = Document._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (
                id, owner_id, original_name, file, size, sha256, page_count, status, error, thumbnails,
                created_at, updated_at
            )
            SELECT id, %s, 'bench-' || n || '.pdf', %s, 1000, repeat('0', 64), 1,
                   (ARRAY['uploaded', 'processing', 'ready', 'failed'])[1 + mod(n, 4)], '',
                   CASE WHEN mod(n, %s) = 0 AND n / %s <= %s THEN '{{}}'::jsonb ELSE jsonb_build_object({pairs}) END,
                   now() - interval '2 days', now() - interval '2 days'
            FROM (SELECT gen_random_uuid() AS id, n FROM generate_series(1, %s) AS n) AS seeded
            """,  # noqa: S608 - the table name comes from the model, the sizes from the settings
            [owner_id, SOURCE_PDF, every, every, missing, documents],
        )
        # Hint bits and the visibility map: the walk does not pay for the insert.
        cursor.execute(f"VACUUM ANALYZE {table}")


def _store_source_pdf() -> None:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from tests.documents import pdfs

    if default_storage.exists(SOURCE_PDF):
        default_storage.delete(SOURCE_PDF)
    stored = default_storage.save(SOURCE_PDF, ContentFile(pdfs.text_pdf_bytes(["a page to draw"])))
    assert stored == SOURCE_PDF, stored


def _start_pool(threads: int) -> Any:
    return start_logged(
        [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", str(threads)]
        + ["--queues", "thumbnails"],
        ROOT / "var" / "bench-thumbnail-maintenance-worker.log",
        env={**os.environ, "dramatiq_queue_prefetch": str(threads)},
    )


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--missing", type=int, default=400)
    parser.add_argument("--batch", type=int, help="THUMBNAIL_MAINTENANCE_BATCH for this run (default: the setting)")
    args = parser.parse_args()
    if args.batch:
        os.environ["THUMBNAIL_MAINTENANCE_BATCH"] = str(args.batch)

    ensure_database()
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from documents.models import Document, ThumbnailMaintenancePass
    from jobs.core.queues import get_queue
    from jobs.dispatch.registry import get_job_type
    from jobs.dispatch.services import start_job
    from jobs.models import TERMINAL_STATUSES, Job, JobStatus
    from jobs.models.schedule import Schedule
    from jobs.ops.scheduling.firing import run_now

    call_command("migrate", verbosity=0)
    owner, _ = get_user_model().objects.get_or_create(username="bench-thumbnails")
    media = Path(os.environ["MEDIA_ROOT"])
    media.mkdir(parents=True, exist_ok=True)
    _forget_earlier_runs()
    _store_source_pdf()
    seeding = time.perf_counter()
    _seed(owner.pk, args.documents, args.missing)
    seeded_s = time.perf_counter() - seeding
    without = list(Document.objects.filter(thumbnails={}).values_list("id", flat=True))
    sizes = [str(size) for size in settings.THUMBNAIL_SIZES]
    policy = get_queue("thumbnails")
    print(
        f"seeded {args.documents:,} documents ({len(without)} without thumbnails) in {seeded_s:.1f} s; "
        f"batch {settings.THUMBNAIL_MAINTENANCE_BATCH:,}, run budget {settings.THUMBNAIL_MAINTENANCE_RUN_BUDGET_S} s, "
        f"thumbnails queue {policy.processes} x {policy.threads}, time limit {policy.time_limit_s} s",
        flush=True,
    )
    pool = _start_pool(policy.threads)
    try:
        # The pool's boot is not the walk's: a canary on the queue first.
        kind = get_job_type("canary")
        payload = kind.payload_serializer()(data={"queue": "thumbnails"})
        payload.is_valid(raise_exception=True)
        canary = start_job(kind, None, dict(payload.validated_data)).job
        _wait(lambda: Job.objects.filter(id=canary.id, status=JobStatus.COMPLETED).exists(), 120, "the pool to boot")
        schedule = Schedule.objects.get(name="thumbnail maintenance")
        started = time.monotonic()
        fired = run_now(schedule)
        assert fired is not None and fired.job is not None, fired

        def walked() -> bool:
            return ThumbnailMaintenancePass.objects.filter(is_open__isnull=True).exists() and not (
                Job.objects.filter(type=MAINTENANCE_TYPE).exclude(status__in=TERMINAL_STATUSES).exists()
            )

        _wait(walked, 600, "the maintenance pass to finish")
        walked_s = time.monotonic() - started
        _wait(
            lambda: not Job.objects.filter(type="thumbnails").exclude(status__in=TERMINAL_STATUSES).exists(),
            1800,
            "the thumbnails jobs to finish",
        )
        repaired_s = time.monotonic() - started
    finally:
        stop(pool)
    walk = ThumbnailMaintenancePass.objects.get()
    runs = list(Job.objects.filter(type=MAINTENANCE_TYPE).order_by("created_at"))
    failed_runs = [job for job in runs if job.status != JobStatus.COMPLETED]
    longest_run = max(
        (job.finished_at - job.started_at).total_seconds() for job in runs if job.started_at and job.finished_at
    )
    assert walk.finished_at is not None
    thumbnails_jobs = Job.objects.filter(type="thumbnails")
    repaired = Document.objects.filter(id__in=without, thumbnails__has_keys=sizes).count()
    limit = policy.time_limit_s
    print(
        "\n".join(
            [
                f"walk: {walk.checked:,} documents checked in {walked_s:.2f} s from the fire "
                f"(pass {(walk.finished_at - walk.started_at).total_seconds():.2f} s in the database)",
                f"runs: {walk.runs} maintenance job(s) ({len(failed_runs)} not completed), {walk.batches} batches",
                f"largest batch: {walk.longest_batch_s * 1000:.1f} ms against the queue's {limit} s limit "
                f"({100 * walk.longest_batch_s / limit:.3f} %)"
                if limit
                else f"largest batch: {walk.longest_batch_s * 1000:.1f} ms (no time limit)",
                f"longest maintenance run: {longest_run:.2f} s against the {limit} s limit",
                f"sent for repair: {walk.repaired:,} documents in {thumbnails_jobs.count()} thumbnails job(s) "
                f"({thumbnails_jobs.filter(status=JobStatus.COMPLETED).count()} completed)",
                f"repaired: {repaired:,} of {len(without):,} documents now have every size, "
                f"{repaired_s:.1f} s from the fire",
            ]
        ),
        flush=True,
    )
    shutil.rmtree(media, ignore_errors=True)


if __name__ == "__main__":
    main()
