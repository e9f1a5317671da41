"""Isolation, the customer's headline: a light endpoint's p99 with idle workers, under heavy jobs, and
with OCR inside a request (the "before" picture).

    .venv/bin/python bench/isolation.py [--seconds 20] [--concurrency 4] [--ocr-pages 200]
        [--recipients 2000] [--rows 100000] [--export-format xlsx] [--thumbnails 50] [--inline-pages 10]

The whole system runs as ``make run`` runs it: ``manage.py runconveyor`` (uvicorn
with ``WEB_WORKERS`` = 2 processes, one worker pool per queue at ``WORKER_NICE``
= 10, the scheduler), on PostgreSQL (a private cluster on a spare port with
fsync on, or ``--database-url``) and Redis (database 14, namespace
``conveyor-bench-isolation``), with ``bench.settings`` for the bench endpoints.
The light endpoint is ``GET /bench/ping`` (token authentication), loaded by
``--concurrency`` clients in this process, each request on a new connection
(visitors, not one pinned connection: a kept-alive connection stays with the
web process that accepted it, so whether it shares a process with the inline
OCR would be luck). The SMTP sink stands in for an external provider: it runs
at nice 19 so that it does not count as this machine's load.

1. idle: the light endpoint's latency with the pools idle;
2. loaded: the same while a ``--ocr-pages`` OCR job (image-only PDF), a
   ``--recipients`` campaign (local aiosmtpd sink, rate limiter off), a
   ``--rows`` export and ``--thumbnails`` thumbnail jobs run, all sent at once;
   what is still running at the end of the window is printed, then cancelled;
3. before: the same endpoint while one client keeps posting
   ``/bench/ocr-inline`` (``--inline-pages`` pages OCRed inside the request, two at
   a time as the pdf-processing queue does, at the web server's priority), with
   the pools idle.

Target: loaded p99 <= 2 x idle p99 on this 2-core machine.
"""

# ruff: noqa: E402 - the standard library must be found before it is imported (see below)
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Not bench/ first on the path: bench/email.py would shadow the standard library's email
# package, which http.client imports.
sys.path[0] = str(ROOT)

import argparse
import http.client
import json
import os
import threading
import time
from typing import Any

import psutil

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
os.environ.setdefault("DRAMATIQ_NAMESPACE", "conveyor-bench-isolation")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("MEDIA_ROOT", str(ROOT / "var" / "bench-isolation"))
os.environ.setdefault("WEB_WORKERS", "2")
os.environ.setdefault("WORKER_NICE", "10")
os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.smtp.EmailBackend"
os.environ["EMAIL_RATE_LIMIT_PER_MINUTE"] = "0"  # the campaign runs as fast as it can: the most load

from bench.processes import start_logged, stop, stop_children_at_exit
from bench.web import LoadResult, run_load, setup_database, staff_token, wait_for_web
from tests.services import free_port

WORK = Path(os.environ["MEDIA_ROOT"])
SEEDED_JOB_TYPE = "bench-isolation-row"


def flush_namespace() -> None:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    for key in client.scan_iter(match=os.environ["DRAMATIQ_NAMESPACE"] + ":*", count=1000):
        client.delete(key)


def ocr_pdf(pages: int) -> Path:
    """An image-only PDF of ``pages`` pages (kept between runs: it takes a while to draw)."""
    from tests.documents import pdfs

    path = WORK / f"ocr-{pages}.pdf"
    if not path.exists():
        pdfs.image_pdf(path, [pdfs.sample_words(60, seed=n) for n in range(pages)])
    return path


def add_document(owner: Any, path: Path) -> Any:
    from django.core.files import File

    from documents.models import Document
    from documents.pdf import inspect_pdf

    document = Document(owner=owner, original_name=path.name, size=path.stat().st_size, sha256="-")
    with open(path, "rb") as handle:
        document.file.save("bench.pdf", File(handle), save=False)
    document.page_count = inspect_pdf(document.path).pages
    document.save()
    return document


def prepare(staff: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Everything the heavy jobs need, made before any timing starts."""
    from bench.email import _users as recipients
    from bench.export import _seed as seed_rows
    from campaigns.models import EmailTemplate
    from tests.documents import pdfs

    template, _ = EmailTemplate.objects.get_or_create(
        name="bench-isolation",
        defaults={"subject": "Hello {{ recipient.username }}", "body_text": "Dear {{ recipient.username }}, news."},
    )
    small = pdfs.text_pdf(WORK / "thumbnail.pdf", ["a page to draw"])
    seed_rows(staff.pk, args.rows, SEEDED_JOB_TYPE)
    return {
        "ocr_document": add_document(staff, ocr_pdf(args.ocr_pages)),
        "thumbnail_documents": [add_document(staff, small) for _ in range(args.thumbnails)],
        "user_ids": recipients(args.recipients),
        "template_id": template.pk,
    }


def start_heavy_jobs(staff: Any, work: dict[str, Any], export_format: str) -> dict[str, list[Any]]:
    from django.db import transaction

    from documents.services import enqueue_thumbnails
    from jobs.dispatch.registry import get_job_type
    from jobs.dispatch.services import start_job

    with transaction.atomic():
        ocr = start_job(get_job_type("pdf-ocr"), staff, {"file_id": work["ocr_document"].id, "priority": "normal"})
        campaign = start_job(
            get_job_type("email-batch"),
            staff,
            {"user_ids": work["user_ids"], "template_id": work["template_id"], "schedule_at": None, "name": "bench"},
        )
        export = start_job(
            get_job_type("csv-export"),
            staff,
            {"query_params": {"dataset": "jobs", "filters": {"type": SEEDED_JOB_TYPE}}, "format": export_format},
        )
        thumbnails = [enqueue_thumbnails([document], owner=staff) for document in work["thumbnail_documents"]]
    return {"ocr": [ocr.job], "campaign": [campaign.job], "export": [export.job], "thumbnails": thumbnails}


def describe_and_cancel(jobs: dict[str, list[Any]]) -> list[str]:
    """Where each kind of heavy job stood at the end of the window; cancel what still runs."""
    from jobs.core.exceptions import JobNotCancellable
    from jobs.dispatch.services import cancel_job

    lines = []
    for kind, members in jobs.items():
        states = []
        for job in members:
            job.refresh_from_db()
            states.append(f"{job.status} {job.progress:.0f}%")
            if not job.is_terminal:
                try:
                    cancel_job(job)
                except JobNotCancellable:
                    pass  # it finished meanwhile
        shown = states if len(states) <= 3 else [f"{sum(s.startswith('completed') for s in states)} completed"]
        lines.append(f"  {kind:<11} {', '.join(shown)} of {len(members)}")
    return lines


def wait_until_idle(timeout: float = 120) -> None:
    from jobs.models import Job, JobStatus

    deadline = time.monotonic() + timeout
    busy = [JobStatus.ACTIVE, JobStatus.QUEUED, JobStatus.RETRYING]
    while Job.objects.filter(status__in=busy).exclude(type="canary").exists() and time.monotonic() < deadline:
        time.sleep(0.5)


class InlineOcrClient(threading.Thread):
    """Keeps one request running that OCRs ``pages`` pages inside the web server."""

    def __init__(self, port: int, token: str, pdf: Path, pages: int) -> None:
        super().__init__(daemon=True)
        self.port, self.token, self.pages = port, token, pages
        self.path = str(pdf.relative_to(WORK))
        self.done = threading.Event()
        self.statuses: list[int] = []

    def run(self) -> None:
        body = json.dumps({"path": self.path, "pages": self.pages})
        headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json"}
        while not self.done.is_set():
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            connection.request("POST", "/bench/ocr-inline", body=body, headers=headers)
            self.statuses.append(connection.getresponse().status)
            connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--ocr-pages", type=int, default=200)
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--export-format", choices=["csv", "xlsx"], default="xlsx")
    parser.add_argument("--thumbnails", type=int, default=50)
    parser.add_argument("--inline-pages", type=int, default=10)
    parser.add_argument("--database-url", help="an existing PostgreSQL database instead of a private cluster")
    args = parser.parse_args()
    stop_children_at_exit()
    WORK.mkdir(parents=True, exist_ok=True)
    (ROOT / "var" / "bench-email").mkdir(parents=True, exist_ok=True)  # bench.email's sink writes there
    setup_database(args.database_url, "bench_isolation")
    flush_namespace()
    from django.contrib.auth import get_user_model

    from bench.email import Sink

    token = staff_token()
    staff = get_user_model().objects.get(username="bench-staff")
    work = prepare(staff, args)
    sink = Sink("isolation")
    psutil.Process(sink.proc.pid).nice(19)
    port = free_port()
    log = ROOT / "var" / "bench-isolation.log"
    env = {**os.environ, "PORT": str(port), "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(sink.port)}
    system = start_logged([sys.executable, "manage.py", "runconveyor"], log, env)
    results: dict[str, LoadResult] = {}
    try:
        wait_for_web(port, system, log)
        time.sleep(10)  # let every pool boot: an idle figure must not include their start-up
        load = {"concurrency": args.concurrency, "seconds": args.seconds, "keep_alive": False}
        results["idle"] = run_load(port, "GET", "/bench/ping", token, **load)
        jobs = start_heavy_jobs(staff, work, args.export_format)
        results["loaded"] = run_load(port, "GET", "/bench/ping", token, **load)
        states = describe_and_cancel(jobs)
        wait_until_idle()
        inline = InlineOcrClient(port, token, ocr_pdf(args.ocr_pages), args.inline_pages)
        inline.start()
        results["before"] = run_load(port, "GET", "/bench/ping", token, **load)
        inline.done.set()
    finally:
        stop(system)
        sink.stop()
        flush_namespace()
    idle, loaded, before = results["idle"], results["loaded"], results["before"]
    print(
        f"runconveyor: web x {os.environ['WEB_WORKERS']}, pools at nice {os.environ['WORKER_NICE']}; "
        f"{args.concurrency} clients, a new connection per request, {args.seconds:.0f} s per window; PostgreSQL"
    )
    print(f"idle workers                 {idle.summary()}")
    print(
        f"heavy jobs running           {loaded.summary()}\n"
        f"  ({args.ocr_pages}-page OCR, {args.recipients}-recipient campaign, {args.rows}-row {args.export_format}"
        f" export, {args.thumbnails} thumbnail jobs; at the end of the window:)"
    )
    print("\n".join(states))
    print(f"OCR inside a request         {before.summary()}  ({args.inline_pages} pages a request)")
    print(f"ratio loaded / idle p99 {loaded.percentile(99) / idle.percentile(99):.2f} (target <= 2.00)")
    print(f"ratio before / idle p99 {before.percentile(99) / idle.percentile(99):.2f} (OCR in the request)")


if __name__ == "__main__":
    main()
