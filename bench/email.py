# ruff: noqa: E402 - the standard library must be found before it is imported (see below)
"""Email: plain smtplib over 5 connections versus the email-batch job; and the rate limiter's accuracy.

    .venv/bin/python bench/email.py [--emails 2000] [--rounds 3] [--processes 5] [--threads 1]
                                    [--limit 50 --window 5 --limited-emails 200]

A local aiosmtpd server (its own process) receives everything and writes
each message's arrival time and ``X-Conveyor-Delivery`` header to a file.

1. plain, for reference: N messages built beforehand, sent with smtplib over
   5 connections (one per thread), timed from the first connect to the last
   answer;
2. rounds of, in turn: plain (the same, each message built as it is sent:
   the baseline) and the ``email-batch`` job to N users with the limiter
   off, run by a real ``rundramatiq`` pool for email-sender, timed from
   ``start_job`` (which creates the campaign and its deliveries) to the
   parent job completed; checks that every recipient arrived exactly once.
   The ratio is taken per round (the machine is shared: a baseline from
   another minute says little), and the median reported;
3. limiter: ``email-batch`` to M users with the limiter at ``--limit`` per
   ``--window`` seconds; prints the most emails the server saw in any
   window, the count per consecutive window, and the achieved rate versus
   the limit.

It uses its own database (``bench_campaigns``), Redis database 14 and key
prefix, and files under var/bench-email (deleted at the end).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's directory comes first on sys.path and its name
# would hide the standard library's ``email`` package: take the directory off.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse
import shutil
import signal
import smtplib
import socket
import subprocess
import threading
import time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_campaigns")
os.environ.setdefault("DRAMATIQ_NAMESPACE", "conveyor-bench-campaigns")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")

from bench.databases import ensure_database  # noqa: E402 - needs the project root on the path
from bench.processes import stop as stop_process  # noqa: E402 - needs the project root on the path

WORK = ROOT / "var" / "bench-email"
HEADER = "X-Conveyor-Delivery"


# -- the SMTP sink (run as its own process: `bench/email.py --serve PORT FILE`) ----
def serve(port: int, out: str) -> None:
    from aiosmtpd.controller import Controller

    sink = open(out, "a", buffering=1)  # noqa: SIM115 - closed on exit

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            header = b""
            for line in envelope.original_content.split(b"\r\n"):
                if line.startswith(HEADER.encode() + b":"):
                    header = line.split(b":", 1)[1].strip()
                    break
                if not line:
                    break
            sink.write(f"{time.time():.6f} {header.decode() or '-'}\n")
            return "250 2.0.0 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    sink.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_sinks: list[Sink] = []


class Sink:
    def __init__(self, name: str) -> None:
        self.port = _free_port()
        self.path = WORK / f"received-{name}.txt"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), str(self.path)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _sinks.append(self)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=1) as probe:
                    probe.noop()
                break
            except OSError:
                time.sleep(0.1)
        self.path.write_text("")  # forget the probe

    def lines(self) -> list[tuple[float, str]]:
        rows = []
        for line in self.path.read_text().splitlines():
            at, header = line.split(" ", 1)
            rows.append((float(at), header))
        return rows

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


# -- 1. plain smtplib -----------------------------------------------------------
def _plain_message(i: int) -> bytes:
    """The same shape as the job's emails: text and HTML alternatives, compat32 like Django's."""
    message = MIMEMultipart("alternative")
    message["Subject"] = f"Hello bench-email-{i}"
    message["From"], message["To"] = "conveyor@localhost", f"bench{i}@example.com"
    message[HEADER] = f"plain/{i}"
    message.attach(MIMEText(f"Dear bench-email-{i}, news from the bench campaign.", "plain", "utf-8"))
    message.attach(MIMEText(f"<p>Dear bench-email-{i}</p>", "html", "utf-8"))
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def bench_plain(emails: int, connections: int, *, prebuilt: bool) -> float:
    """smtplib over ``connections`` connections (a thread each); messages built before or while timing."""
    sink = Sink("plain-prebuilt" if prebuilt else "plain")
    ready = [_plain_message(i) for i in range(emails)] if prebuilt else []
    shares = [range(emails)[i::connections] for i in range(connections)]

    def send(share: range) -> None:
        with smtplib.SMTP("127.0.0.1", sink.port) as conn:
            for i in share:
                payload = ready[i] if prebuilt else _plain_message(i)
                conn.sendmail("conveyor@localhost", [f"bench{i}@example.com"], payload)

    started = time.monotonic()
    threads = [threading.Thread(target=send, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    _wait_lines(sink, emails)
    sink.stop()
    return emails / elapsed


def _wait_lines(sink: Sink, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(sink.lines()) < n and time.monotonic() < deadline:
        time.sleep(0.05)


# -- 2 and 3. the email-batch job ----------------------------------------------------
def _setup_django() -> None:
    import django

    ensure_database()
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    keys = list(client.scan_iter(match=os.environ["DRAMATIQ_NAMESPACE"] + ":*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _users(n: int) -> list[int]:
    from django.contrib.auth import get_user_model

    from campaigns.models import Campaign

    user_model = get_user_model()
    Campaign.objects.all().delete()
    user_model.objects.filter(username__startswith="bench-email-").delete()
    user_model.objects.bulk_create(
        [user_model(username=f"bench-email-{i}", email=f"bench{i}@example.com") for i in range(n)],
        batch_size=1000,
    )
    return list(user_model.objects.filter(username__startswith="bench-email-").values_list("id", flat=True))


def _pool(sink: Sink, processes: int, threads: int, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(sink.port),
        "dramatiq_queue_prefetch": str(threads),
        **extra,
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
            "email-sender",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=open(WORK / "pool.log", "ab"),  # noqa: SIM115 - the child holds it
        stderr=subprocess.STDOUT,
    )
    time.sleep(6)  # let the worker processes boot
    return proc


def _run_campaign(user_ids: list[int], timeout: float) -> tuple[float, int]:
    """Seconds from ``start_job`` to the parent completed, and the campaign's id."""
    from django.contrib.auth import get_user_model

    from campaigns.models import EmailTemplate
    from jobs.dispatch.registry import get_job_type
    from jobs.dispatch.services import start_job
    from jobs.models import Job, JobStatus

    template, _ = EmailTemplate.objects.get_or_create(
        name="bench",
        defaults={
            "subject": "Hello {{ recipient.username }}",
            "body_text": "Dear {{ recipient.username }}, news from {{ campaign.name }}.",
            "body_html": "<p>Dear {{ recipient.username }}</p>",
        },
    )
    staff, _ = get_user_model().objects.get_or_create(username="bench-staff", defaults={"is_staff": True})
    kind = get_job_type("email-batch")
    started = time.monotonic()
    job = start_job(
        kind, staff, {"user_ids": user_ids, "template_id": template.pk, "schedule_at": None, "name": "bench"}
    ).job
    deadline = started + timeout
    while time.monotonic() < deadline:
        status = Job.objects.filter(id=job.id).values_list("status", flat=True).get()
        if status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    job.refresh_from_db()
    if job.status != JobStatus.COMPLETED:
        print(f"warning: the campaign's job is {job.status}: {job.error_message}")
        log = (WORK / "pool.log").read_text(errors="replace").splitlines()
        print("\n".join(line for line in log if " INFO " not in line)[-3000:])
    print(f"  job result     : {job.result}")
    return elapsed, int((job.result or {}).get("campaign_id", 0))


def bench_rounds(emails: int, processes: int, threads: int, rounds: int) -> list[tuple[float, float]]:
    """Plain smtplib and the job in turn, ``rounds`` times: (plain, job) emails/s per round.

    The machine is shared: a baseline measured minutes before the job says
    little about the job's own minute. Each round measures the baseline
    right before the job, with the same pool (idle meanwhile) and users.
    """
    _flush_redis()
    user_ids = _users(emails)
    sink = Sink("job")
    pool = _pool(sink, processes, threads, {"EMAIL_RATE_LIMIT_PER_MINUTE": "0"})
    results = []
    try:
        for round_ in range(1, rounds + 1):
            plain = bench_plain(emails, 5, prebuilt=False)
            elapsed, campaign_id = _run_campaign(user_ids, timeout=600)
            _wait_lines(sink, emails * round_)
            received = [header for _, header in sink.lines() if header.startswith(f"{campaign_id}/")]
            duplicates = len(received) - len(set(received))
            job = emails / elapsed
            print(
                f"round {round_}: plain {plain:6.0f} emails/s, job {job:6.0f} emails/s, ratio {job / plain:4.2f}; "
                f"received {len(set(received))} of {emails}, {duplicates} duplicate(s)",
                flush=True,
            )
            results.append((plain, job))
    finally:
        stop_process(pool)
        sink.stop()
    return results


def bench_limiter(emails: int, limit: int, window: float, processes: int, threads: int) -> None:
    _flush_redis()
    user_ids = _users(emails)
    sink = Sink("limited")
    extra = {
        "EMAIL_RATE_LIMIT_PER_MINUTE": str(limit),
        "EMAIL_RATE_LIMIT_WINDOW_S": str(window),
        "EMAIL_BATCH_SIZE": "10",
    }
    pool = _pool(sink, processes, threads, extra)
    try:
        elapsed, _ = _run_campaign(user_ids, timeout=emails * window / limit * 3 + 60)
    finally:
        stop_process(pool)
    times = sorted(at for at, _ in sink.lines())
    sink.stop()
    worst, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        worst = max(worst, end - start + 1)
    per_window = []
    if times:
        first = times[0]
        buckets = int((times[-1] - first) // window) + 1
        per_window = [
            sum(1 for at in times if first + k * window <= at < first + (k + 1) * window) for k in range(buckets)
        ]
    full = per_window[:-1]
    print(f"limiter: {limit} per {window:g} s, {emails} emails, {processes} process(es) x {threads} threads")
    print(f"  took           : {elapsed:.1f} s (at the limit, at least {(emails / limit - 1) * window:.1f} s)")
    print(f"  max in any {window:g} s window at the server: {worst} (limit {limit})")
    print(f"  per consecutive window: {per_window}")
    if full:
        print(f"  use of the limit in full windows: {100 * sum(full) / (limit * len(full)):.0f} %")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=2000)
    # The queue table's email-sender pool (jobs/queues.py): 5 processes x 1 thread.
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--limited-emails", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="plain and job in turn, this many times")
    parser.add_argument("--skip-limiter", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    try:
        prebuilt = bench_plain(args.emails, 5, prebuilt=True)
        print(f"plain smtplib, 5 connections, messages built beforehand: {prebuilt:6.0f} emails/s (for reference)")
        _setup_django()
        print(
            f"plain smtplib (5 connections, each message built in turn) versus email-batch, limiter off, "
            f"{args.processes} x {args.threads} threads:"
        )
        rounds = bench_rounds(args.emails, args.processes, args.threads, args.rounds)
        ratios = sorted(job / plain for plain, job in rounds)
        print(
            f"ratio per round: {', '.join(f'{r:.2f}' for r in ratios)}; median {ratios[len(ratios) // 2]:.2f} "
            "(target >= 0.80)"
        )
        if not args.skip_limiter:
            bench_limiter(args.limited_emails, args.limit, args.window, args.processes, args.threads)
    finally:
        for sink in _sinks:
            sink.stop()
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
