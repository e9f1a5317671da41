"""Fair dispatch inside a queue: one customer's small work behind another's backlog, FIFO against fair.

    .venv/bin/python bench/fairness.py [--quick] [--rounds 3] [--a-documents 100] [--ocr-pages 300]
        [--b-documents 20] [--b-delay 5] [--waiting 100000] [--enqueues 2000]

The scenario, on real worker pools (the queue table's pdf-processing and
thumbnails pools, started as ``runconveyor`` starts them: ``pool_spec``):

* customer A posts 4 thumbnail requests of ``--a-documents`` documents each
  and one OCR of a ``--ocr-pages``-page image-only PDF (the services the API
  calls: ``start_job`` of ``thumbnails`` and ``pdf-ocr``);
* ``--b-delay`` seconds later, customer B uploads ``--b-documents`` single-page
  image-only PDFs (``store_upload``, which starts each one's thumbnails) and
  asks for each one's OCR. A B document is done when its thumbnails job and
  its OCR job are both finished; its time runs from its upload.

Each round runs the scenario twice on fresh pools, FIFO and fair (FIFO first in odd rounds,
fair first in even ones):

* FIFO: every job in one owner bucket, so each queue serves its messages in
  arrival order (per priority). Buckets are decided where a message is
  built: the bench process replaces ``owner_bucket`` (as imported by
  ``jobs.dispatch.services``) for its own requests, and the pools run with
  ``bench.fifo_settings``, whose app does the same for the children they fan
  out;
* fair: the real settings, buckets ``u<A>`` and ``u<B>``.

and B alone once (its baseline). Three rounds by default; the figures are the
medians over rounds, A's ratio the median of each round's fair / FIFO. Then
the enqueue latency, straight against the broker
(``ConveyorRedisBroker.enqueue`` to a scratch queue of a scratch namespace):
the median of ``--enqueues`` enqueues into an empty queue, and into one with
``--waiting`` messages waiting (half high priority, spread over 1,000 owners).

Targets:

* B's p95 (fair) <= B's p95 alone + the longest of A's run segments that was
  running when B's first upload arrived (the slot B may have to wait for; a
  page range that makes way for B runs in segments, so a segment, not the
  range, is what holds the slot);
* A's total time (fair) <= 1.1 x A's total time (FIFO);
* enqueue latency with ``--waiting`` messages <= 1.5 x into an empty queue.

It uses its own database (``bench_fairness``), Redis database 14 with its own
namespaces, and files under var/bench-fairness (deleted at the end). Logs:
var/bench-fairness-*.log.
"""

# ruff: noqa: E402 - the project root must be on the path before the project is imported
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Not bench/ first on the path: bench/email.py would shadow the standard library's email package.
sys.path[0] = str(ROOT)

import argparse
import os
import shutil
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

FAIR_SETTINGS = "config.settings"
FIFO_SETTINGS = "bench.fifo_settings"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", FAIR_SETTINGS)
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_fairness")
os.environ.setdefault("DRAMATIQ_NAMESPACE", "conveyor-bench-fairness")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("MEDIA_ROOT", str(ROOT / "var" / "bench-fairness"))

from bench.databases import ensure_database
from bench.processes import start_logged, stop, stop_children_at_exit

WORK = Path(os.environ["MEDIA_ROOT"])
QUEUES = ("pdf-processing", "thumbnails")
THUMBNAIL_REQUESTS = 4
SCRATCH_NAMESPACE = "conveyor-bench-fairness-enqueue"
SCRATCH_QUEUE = "bench-scratch"
POLL_S = 0.25


def flush_namespace(namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    for key in client.scan_iter(match=namespace + ":*", count=1000):
        client.delete(key)


# -- the customers' files and requests ----------------------------------------------------
def add_document(owner: Any, path: Path) -> Any:
    """A stored document of ``owner``'s, with no job started (A's library, there before the run)."""
    from django.core.files import File

    from documents.models import Document
    from documents.pdf import inspect_pdf

    document = Document(owner=owner, original_name=path.name, size=path.stat().st_size, sha256="-")
    with open(path, "rb") as handle:
        document.file.save("bench.pdf", File(handle), save=False)
    document.page_count = inspect_pdf(document.path).pages
    document.save()
    return document


@dataclass
class Customers:
    a: Any
    b: Any
    a_documents: list[list[Any]]  # one list per thumbnail request
    a_ocr_document: Any
    b_pdf: bytes


def prepare(args: argparse.Namespace) -> Customers:
    from django.contrib.auth import get_user_model

    from tests.documents import pdfs

    WORK.mkdir(parents=True, exist_ok=True)
    users = get_user_model().objects
    a, _ = users.get_or_create(username="bench-fairness-a", defaults={"email": "a@customer-a.example"})
    b, _ = users.get_or_create(username="bench-fairness-b", defaults={"email": "b@customer-b.example"})
    page = pdfs.text_pdf(WORK / "one-page.pdf", ["a page to draw"])
    a_documents = [[add_document(a, page) for _ in range(args.a_documents)] for _ in range(THUMBNAIL_REQUESTS)]
    ocr = WORK / f"ocr-{args.ocr_pages}.pdf"
    if not ocr.exists():
        pdfs.image_pdf(ocr, [pdfs.sample_words(60, seed=n) for n in range(args.ocr_pages)])
    b_pdf = pdfs.image_pdf(WORK / "b-page.pdf", [pdfs.sample_words(60, seed=1000)]).read_bytes()
    return Customers(a, b, a_documents, add_document(a, ocr), b_pdf)


def post_a(customers: Customers) -> list[Any]:
    """A's five requests: four thumbnail requests and one OCR. Returns the parent jobs."""
    from jobs.dispatch.registry import get_job_type
    from jobs.dispatch.services import start_job

    jobs = []
    for documents in customers.a_documents:
        data = {"document_ids": [d.id for d in documents], "format": "png", "force": True, "priority": "normal"}
        jobs.append(start_job(get_job_type("thumbnails"), customers.a, data).job)
    ocr = {"file_id": customers.a_ocr_document.id, "priority": "normal"}
    jobs.append(start_job(get_job_type("pdf-ocr"), customers.a, ocr).job)
    return jobs


@dataclass
class BRequest:
    sent_at: datetime
    thumbnails_job_id: Any
    ocr_job_id: Any


def post_b(customers: Customers, count: int) -> list[BRequest]:
    """B's uploads, each followed by its OCR request, as a client would send them one after another."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.utils import timezone

    from documents.services import store_upload
    from jobs.dispatch.registry import get_job_type
    from jobs.dispatch.services import start_job
    from jobs.models import Job

    requests = []
    for number in range(count):
        sent_at = timezone.now()
        upload = SimpleUploadedFile(f"b-{number}.pdf", customers.b_pdf, content_type="application/pdf")
        document = store_upload(customers.b, upload)
        thumbnails = Job.objects.filter(
            owner=customers.b, type="thumbnails", arguments__document_ids=[str(document.id)]
        )
        ocr = start_job(get_job_type("pdf-ocr"), customers.b, {"file_id": document.id, "priority": "normal"}).job
        requests.append(BRequest(sent_at, thumbnails.values_list("id", flat=True).get(), ocr.id))
    return requests


def wait_done(job_ids: list[Any], timeout_s: float) -> None:
    from jobs.core.enums import TERMINAL_STATUSES
    from jobs.models import Job

    deadline = time.monotonic() + timeout_s
    while Job.objects.filter(id__in=job_ids).exclude(status__in=TERMINAL_STATUSES).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"jobs still unfinished after {timeout_s:.0f} s")
        time.sleep(POLL_S)


def finished_at(job_ids: list[Any]) -> dict[Any, datetime]:
    from jobs.models import Job, JobStatus

    rows = Job.objects.filter(id__in=job_ids).values_list("id", "status", "finished_at", "error_message")
    ends: dict[Any, datetime] = {}
    for job_id, status, end, error in rows:
        if status != JobStatus.COMPLETED:
            print(f"  warning: job {job_id} {status}: {error[:120]}")
        assert end is not None, job_id
        ends[job_id] = end
    return ends


# -- pools ------------------------------------------------------------------------------------
def start_pools(settings_module: str) -> list[Any]:
    from jobs.core.queues import get_queue
    from jobs.ops.supervisor import pool_spec

    procs = []
    for queue in QUEUES:
        spec = pool_spec(get_queue(queue), shutdown_grace_s=5)
        env = {**os.environ, **spec.env, "DJANGO_SETTINGS_MODULE": settings_module}
        procs.append(start_logged(list(spec.argv), ROOT / "var" / f"bench-fairness-{queue}.log", env))
    wait_for_consumers(procs)
    return procs


def wait_for_consumers(procs: list[Any], timeout_s: float = 120) -> None:
    """Until a worker process of each queue has announced its consumer (presence entries)."""
    import json

    import dramatiq

    from jobs.worker.middleware.presence import workers_key

    broker: Any = dramatiq.get_broker()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        entries = broker.client.hvals(workers_key(broker.namespace))
        announced = {queue for raw in entries for queue in json.loads(raw).get("queues", [])}
        if set(QUEUES) <= announced:
            return
        if any(proc.poll() is not None for proc in procs):
            raise SystemExit("a pool exited at start: see var/bench-fairness-*.log")
        time.sleep(POLL_S)
    raise SystemExit("the pools did not start consuming in time")


def stop_pools(procs: list[Any]) -> None:
    import dramatiq

    from jobs.worker.middleware.presence import workers_key

    for proc in procs:
        stop(proc)
    broker: Any = dramatiq.get_broker()
    broker.client.delete(workers_key(broker.namespace))  # the next round waits for its own pools


# -- one scenario -----------------------------------------------------------------------------
@dataclass
class Outcome:
    b_times: list[float] = field(default_factory=list)
    a_total_s: float | None = None
    a_longest_running_s: float = 0.0
    #: Where B's time went: each of B's jobs' (and their children's) wait for a slot, and how long
    #: B's one-page OCR children ran once started (CPU shared with whatever else runs).
    b_waits: list[float] = field(default_factory=list)
    b_page_runs: list[float] = field(default_factory=list)

    @property
    def b_median(self) -> float:
        return statistics.median(self.b_times)

    @property
    def b_p95(self) -> float:
        return percentile(self.b_times, 95)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


class RunSegments(threading.Thread):
    """Watches one owner's running jobs: each run segment, from its claim to the last moment it was seen
    running. A page range that makes way for another owner runs in several segments, and its row's
    ``started_at`` only tells the last one's start; the slot is held a segment at a time."""

    POLL_S = 0.25

    def __init__(self, owner: Any, since: Any) -> None:
        super().__init__(daemon=True)
        self.owner = owner
        self.since = since  # jobs of earlier rounds (or of a run stopped half way) are not this round's
        self.seen: dict[tuple[str, Any], Any] = {}  # (job id, started_at) -> last seen running
        self.done = threading.Event()

    def run(self) -> None:
        from django.db import connection
        from django.utils import timezone

        from jobs.models import Job, JobStatus

        try:
            while not self.done.is_set():
                now = timezone.now()
                running = Job.objects.filter(
                    owner=self.owner, status=JobStatus.ACTIVE, created_at__gte=self.since, children__isnull=True
                )
                for job_id, started_at in running.values_list("id", "started_at"):
                    if started_at is not None:
                        self.seen[(str(job_id), started_at)] = now
                self.done.wait(self.POLL_S)
        finally:
            connection.close()

    def longest_at(self, moment: Any) -> float:
        """The longest segment that had started by ``moment`` and was still running then (seconds)."""
        self.done.set()
        self.join()
        return max(
            (
                (last - started).total_seconds() + self.POLL_S
                for (_, started), last in self.seen.items()
                if started <= moment <= last + timedelta(seconds=self.POLL_S)
            ),
            default=0.0,
        )


def run_scenario(customers: Customers, args: argparse.Namespace, *, mode: str) -> Outcome:
    """``mode``: "fifo", "fair" or "alone" (B only)."""
    from django.utils import timezone

    from jobs.dispatch import fairness, services

    settings_module = FIFO_SETTINGS if mode == "fifo" else FAIR_SETTINGS
    services.owner_bucket = (lambda job: fairness.SYSTEM_BUCKET) if mode == "fifo" else fairness.owner_bucket  # type: ignore[assignment]
    pools = start_pools(settings_module)
    outcome = Outcome()
    try:
        a_start = timezone.now()
        segments = RunSegments(customers.a, a_start)
        segments.start()
        a_jobs = [] if mode == "alone" else post_a(customers)
        if a_jobs:
            time.sleep(args.b_delay)
        b_requests = post_b(customers, args.b_documents)
        b_ids = [job_id for r in b_requests for job_id in (r.thumbnails_job_id, r.ocr_job_id)]
        wait_done([job.id for job in a_jobs] + b_ids, args.timeout)
        ends = finished_at(b_ids)
        outcome.b_times = [
            (max(ends[r.thumbnails_job_id], ends[r.ocr_job_id]) - r.sent_at).total_seconds() for r in b_requests
        ]
        outcome.b_waits, outcome.b_page_runs = b_breakdown(b_ids)
        if a_jobs:
            a_ends = finished_at([job.id for job in a_jobs])
            outcome.a_total_s = (max(a_ends.values()) - a_start).total_seconds()
            # A's run segments holding a worker slot when B's first upload arrived: B may wait for one to end.
            # A parent waiting for its children holds none (it runs only to fan out and to sum up).
            outcome.a_longest_running_s = segments.longest_at(b_requests[0].sent_at)
        segments.done.set()
    finally:
        stop_pools(pools)
        services.owner_bucket = fairness.owner_bucket  # type: ignore[assignment]
    return outcome


def b_breakdown(b_ids: list[Any]) -> tuple[list[float], list[float]]:
    """B's jobs and their children: each one's wait from created to started; the OCR children's run times."""
    from django.db.models import Q

    from jobs.models import Job

    rows = Job.objects.filter(Q(id__in=b_ids) | Q(parent_id__in=b_ids)).values(
        "type", "parent_id", "created_at", "started_at", "finished_at"
    )
    waits, page_runs = [], []
    for row in rows:
        if row["started_at"] is None:
            continue
        waits.append((row["started_at"] - row["created_at"]).total_seconds())
        if row["parent_id"] is not None and row["type"].startswith("pdf-ocr") and row["finished_at"]:
            page_runs.append((row["finished_at"] - row["started_at"]).total_seconds())
    return waits, page_runs


# -- enqueue latency --------------------------------------------------------------------------
def enqueue_latency(waiting: int, enqueues: int, owners: int = 1000) -> float:
    """Median seconds of one ``enqueue`` to a scratch queue already holding ``waiting`` messages."""
    from dramatiq.message import Message

    from jobs.core.messages import OWNER, PRIORITY
    from jobs.worker.broker import HIGH, ConveyorRedisBroker

    broker = ConveyorRedisBroker(url=os.environ["REDIS_URL"], namespace=SCRATCH_NAMESPACE, middleware=[])
    broker.declare_queue(SCRATCH_QUEUE)
    flush_namespace(SCRATCH_NAMESPACE)

    def message(number: int, *, high: bool = False) -> Message[Any]:
        options: dict[str, Any] = {OWNER: f"u{number % owners}"}
        if high:
            options[PRIORITY] = HIGH
        return Message(queue_name=SCRATCH_QUEUE, actor_name="bench_noop", args=(), kwargs={}, options=options)

    try:
        batch = 1000
        for start in range(0, waiting, batch):
            broker.enqueue_many([message(n, high=n % 2 == 0) for n in range(start, min(waiting, start + batch))])
        assert broker.queue_depth(SCRATCH_QUEUE) == waiting, broker.queue_depth(SCRATCH_QUEUE)
        timings = []
        for number in range(enqueues):
            sent = message(number + waiting)
            began = time.perf_counter()
            broker.enqueue(sent)
            timings.append(time.perf_counter() - began)
        return statistics.median(timings)
    finally:
        flush_namespace(SCRATCH_NAMESPACE)
        broker.client.close()


# -- main -------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one round: a few minutes")
    parser.add_argument("--rounds", type=int, default=None, help="3 (1 with --quick)")
    parser.add_argument("--a-documents", type=int, default=None, help="per thumbnail request: 100 (15)")
    parser.add_argument("--ocr-pages", type=int, default=None, help="A's OCR: 300 (60)")
    parser.add_argument("--b-documents", type=int, default=None, help="20 (6)")
    parser.add_argument("--b-delay", type=float, default=5.0)
    parser.add_argument("--waiting", type=int, default=None, help="for the enqueue latency: 100000 (20000)")
    parser.add_argument("--enqueues", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per scenario, seconds")
    args = parser.parse_args()
    defaults = {"rounds": (3, 1), "a_documents": (100, 15), "ocr_pages": (300, 60), "b_documents": (20, 6)}
    defaults["waiting"] = (100_000, 20_000)
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)

    stop_children_at_exit()
    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    flush_namespace(os.environ["DRAMATIQ_NAMESPACE"])
    started = time.monotonic()
    customers = prepare(args)
    results: dict[str, list[Outcome]] = {"fifo": [], "fair": [], "alone": []}
    latencies: dict[str, list[float]] = {"empty": [], "loaded": []}
    try:
        for number in range(1, args.rounds + 1):
            # Alternate which of the two goes first: a machine whose load drifts favours neither.
            order = ("fifo", "fair") if number % 2 else ("fair", "fifo")
            for mode in (*order, "alone"):
                outcome = run_scenario(customers, args, mode=mode)
                results[mode].append(outcome)
                a_part = "" if outcome.a_total_s is None else f", A total {outcome.a_total_s:6.1f} s"
                running = (
                    ""
                    if mode == "alone"
                    else f", A's longest running at B's arrival {outcome.a_longest_running_s:.1f} s"
                )
                print(
                    f"round {number} {mode:<5}: B median {outcome.b_median:6.1f} s, p95 {outcome.b_p95:6.1f} s"
                    f"{a_part}{running}; B's jobs waited for a slot median "
                    f"{statistics.median(outcome.b_waits or [0]):.1f} s, "
                    f"p95 {percentile(outcome.b_waits or [0], 95):.1f} s, "
                    f"its one-page OCR ran median {statistics.median(outcome.b_page_runs or [0]):.1f} s",
                    flush=True,
                )
            latencies["empty"].append(enqueue_latency(0, args.enqueues))
            latencies["loaded"].append(enqueue_latency(args.waiting, args.enqueues))
            print(
                f"round {number} enqueue: {latencies['empty'][-1] * 1e6:.0f} us empty, "
                f"{latencies['loaded'][-1] * 1e6:.0f} us with {args.waiting:,} waiting",
                flush=True,
            )
    finally:
        flush_namespace(os.environ["DRAMATIQ_NAMESPACE"])
        shutil.rmtree(WORK, ignore_errors=True)

    def med(mode: str, attribute: str) -> float:
        return statistics.median(getattr(outcome, attribute) for outcome in results[mode])

    b_alone_p95 = med("alone", "b_p95")
    b_fair_p95, b_fifo_p95 = med("fair", "b_p95"), med("fifo", "b_p95")
    longest = med("fair", "a_longest_running_s")
    a_fair, a_fifo = med("fair", "a_total_s"), med("fifo", "a_total_s")
    # Each round's fair time over the same round's FIFO time: the load of that part of the run.
    a_ratio = statistics.median(
        fair.a_total_s / fifo.a_total_s
        for fair, fifo in zip(results["fair"], results["fifo"], strict=True)
        if fair.a_total_s and fifo.a_total_s
    )
    empty, loaded = statistics.median(latencies["empty"]), statistics.median(latencies["loaded"])
    print()
    print(
        f"A: {THUMBNAIL_REQUESTS} thumbnail requests x {args.a_documents} documents and a {args.ocr_pages}-page OCR;"
        f" B: {args.b_documents} single-page uploads + OCR, {args.b_delay:.0f} s later."
        f" Medians of {args.rounds} round(s); {time.monotonic() - started:.0f} s in all."
    )
    print(f"B alone         median {med('alone', 'b_median'):6.1f} s  p95 {b_alone_p95:6.1f} s")
    print(f"B behind A FIFO median {med('fifo', 'b_median'):6.1f} s  p95 {b_fifo_p95:6.1f} s")
    print(f"B behind A fair median {med('fair', 'b_median'):6.1f} s  p95 {b_fair_p95:6.1f} s")
    print(f"A total         FIFO {a_fifo:6.1f} s  fair {a_fair:6.1f} s  median of the rounds' ratios {a_ratio:.2f}")
    print(f"enqueue         empty {empty * 1e6:.0f} us  {args.waiting:,} waiting {loaded * 1e6:.0f} us")
    bound = b_alone_p95 + longest
    checks = [
        (
            f"B p95 fair {b_fair_p95:.1f} s <= alone {b_alone_p95:.1f} + A's longest running {longest:.1f} s",
            b_fair_p95 <= bound,
        ),
        (f"A fair / FIFO {a_ratio:.2f} (median of the rounds' ratios) <= 1.10", a_ratio <= 1.1),
        (f"enqueue {args.waiting:,} waiting / empty {loaded / empty:.2f} <= 1.50", loaded <= 1.5 * empty),
    ]
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")


if __name__ == "__main__":
    main()
