"""``GET /metrics``: Prometheus text behind a bearer token, parsed strictly.

Counters only rise (sealed hourly roll-ups plus a live count since the seal
line), histograms are cumulative, and every web process answers the same.
"""

from __future__ import annotations

import re
import urllib.request
from datetime import timedelta
from typing import Any, cast

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs.core.origin import JobOrigin
from jobs.dispatch.canaries import send_canaries
from jobs.dispatch.services import build_job, create_jobs
from jobs.models import TERMINAL_STATUSES, Job, JobStatus
from jobs.models.stats import JobStatsBucket
from jobs.ops.scheduling.cleanup import run_cleanup
from jobs.ops.stats import HOUR, floor_hour, roll_up, roll_up_hour, sealed_until
from jobs.state.transitions import retry
from tests.factories import UserFactory
from tests.jobs.helpers import wait_terminal
from tests.web_server import WebServer
from tests.workers import wait_for

TOKEN = "metrics-test-token"
#: Name, type and labels of every family, as the docstring table of jobs/web/api/metrics.py lists them.
FAMILIES = {
    "conveyor_jobs_finished": ("counter", {"queue", "type", "origin", "status"}),
    "conveyor_job_retries": ("counter", {"queue", "type", "origin"}),
    "conveyor_job_duration_seconds": ("histogram", {"queue", "type", "origin"}),
    "conveyor_jobs_unfinished": ("gauge", {"queue", "type", "status"}),
    "conveyor_queue_depth": ("gauge", {"queue"}),
    "conveyor_workers": ("gauge", {"queue"}),
    "conveyor_canary_latency_seconds": ("gauge", {"queue"}),
    "conveyor_redis_up": ("gauge", set()),
}
_SAMPLE_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? \S+$')

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def metrics_on(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def _scrape_client() -> str:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.content.decode()


def _scrape_server(server: WebServer) -> str:
    request = urllib.request.Request(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our own loopback server
        assert response.status == 200
        return response.read().decode()


def _parse(text: str) -> dict[str, Any]:
    """Every family, after a strict check of the text format; a malformed line fails the test."""
    declared: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kind, name, rest = line.split(" ", 3)
            assert rest.strip(), line
            declared.setdefault(name, {})[kind] = rest
        else:
            match = _SAMPLE_LINE.match(line)
            assert match, f"not a sample line: {line!r}"
            name = match.group(1)
            owners = [family for family in declared if name == family or name.startswith(family + "_")]
            assert owners, f"{name} has no # TYPE line before it"
    for name, lines in declared.items():
        assert set(lines) == {"HELP", "TYPE"}, name
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name, (kind, labels) in FAMILIES.items():
        family = families[name]
        assert family.type == kind, name
        exposed = f"{name}_total" if kind == "counter" else name
        assert declared[exposed]["TYPE"] == kind
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, sample
            if kind == "counter":
                assert sample.name == exposed, sample
    return families


def _value(family: Any, sample_name: str, **labels: str) -> float:
    matches = [
        sample.value
        for sample in family.samples
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) == 1, (sample_name, labels, family.samples)
    return float(matches[0])


def _counters(families: dict[str, Any]) -> Series:
    """Every sample that may only rise: the counters and the histograms' buckets, sums and counts."""
    return {
        (sample.name, frozenset(sample.labels.items())): float(sample.value)
        for family in families.values()
        if family.type in ("counter", "histogram")
        for sample in family.samples
    }


def _assert_histograms_are_whole(families: dict[str, Any]) -> None:
    family = families["conveyor_job_duration_seconds"]
    series: dict[frozenset[tuple[str, str]], list[tuple[float, float]]] = {}
    for sample in family.samples:
        labels = frozenset((k, v) for k, v in sample.labels.items() if k != "le")
        if sample.name.endswith("_bucket"):
            series.setdefault(labels, []).append((float(sample.labels["le"]), sample.value))
    assert series
    for labels, buckets in series.items():
        bounds = [bound for bound, _ in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == float("inf"), labels
        counts = [count for _, count in buckets]
        assert counts == sorted(counts), f"buckets not cumulative: {dict(labels)} {counts}"
        assert _value(family, "conveyor_job_duration_seconds_count", **dict(labels)) == counts[-1]


def _assert_none_went_down(before: Series, after: Series) -> None:
    lowered = {key: (value, after.get(key)) for key, value in before.items() if after.get(key, -1) < value}
    assert not lowered, f"counters went down (or vanished): {lowered}"


def _finished(
    job_type: str,
    queue: str,
    status: str,
    finished_at: Any,
    *,
    run_s: float = 1.0,
    attempts: int = 1,
    origin: str = JobOrigin.CUSTOMER,
) -> Job:
    return Job.objects.create(
        type=job_type,
        queue=queue,
        origin=origin,
        actor="test",
        status=status,
        attempts=attempts,
        created_at=finished_at - timedelta(seconds=run_s + 1),
        started_at=finished_at - timedelta(seconds=run_s),
        finished_at=finished_at,
    )


def _wait_until_every_job_finished() -> None:
    wait_for(lambda: not Job.objects.exclude(status__in=TERMINAL_STATUSES).exists(), 60, what="every job to finish")


def _job(actor: str, job_type: str, **arguments: Any) -> Job:
    job = build_job(
        job_type=job_type, queue="maintenance", actor=actor, arguments={"queue": "maintenance", **arguments}
    )
    return create_jobs([job])[0]


def test_metrics_report_counters_histograms_and_gauges_by_queue_type_and_origin(
    metrics_on, transactional_db, clean_redis, settings
):
    settings.JOBS_STATS_BACKFILL_HOURS = 2
    # Given finished jobs of two types, a retried one, waiting canaries in Redis, and a roll-up
    now = timezone.now()
    _finished("csv-export", "csv-export", JobStatus.COMPLETED, now, run_s=0.3)
    _finished("csv-export", "csv-export", JobStatus.COMPLETED, now, run_s=20)
    _finished("csv-export", "csv-export", JobStatus.FAILED, now, attempts=2)
    _finished("thumbnail", "thumbnails", JobStatus.COMPLETED, now, run_s=2)
    send_canaries(["maintenance"])
    send_canaries(["maintenance"])
    roll_up()
    # When Prometheus scrapes
    families = _parse(_scrape_client())
    # Then finished jobs are counters by queue, type, origin and status
    finished = families["conveyor_jobs_finished"]
    csv = {"queue": "csv-export", "type": "csv-export", "origin": "customer"}
    assert _value(finished, "conveyor_jobs_finished_total", **csv, status="completed") == 2
    assert _value(finished, "conveyor_jobs_finished_total", **csv, status="failed") == 1
    assert _value(finished, "conveyor_jobs_finished_total", **csv, status="cancelled") == 0
    assert _value(families["conveyor_job_retries"], "conveyor_job_retries_total", **csv) == 1
    # Durations are a real histogram per queue, type and origin
    durations = families["conveyor_job_duration_seconds"]
    assert _value(durations, "conveyor_job_duration_seconds_count", **csv) == 2
    assert _value(durations, "conveyor_job_duration_seconds_bucket", **csv, le="0.5") == 1
    assert _value(durations, "conveyor_job_duration_seconds_bucket", **csv, le="30.0") == 2
    assert _value(durations, "conveyor_job_duration_seconds_bucket", **csv, le="+Inf") == 2
    assert _value(durations, "conveyor_job_duration_seconds_sum", **csv) == pytest.approx(20.3, abs=0.01)
    thumbnails = {"queue": "thumbnails", "type": "thumbnail", "origin": "customer"}
    assert _value(durations, "conveyor_job_duration_seconds_count", **thumbnails) == 1
    _assert_histograms_are_whole(families)
    # Gauges: unfinished jobs by queue, type and status; Redis depth, workers, canary latency by queue
    unfinished = families["conveyor_jobs_unfinished"]
    assert _value(unfinished, "conveyor_jobs_unfinished", queue="maintenance", type="canary", status="queued") == 2
    assert _value(unfinished, "conveyor_jobs_unfinished", queue="csv-export", type="csv-export", status="active") == 0
    assert _value(families["conveyor_queue_depth"], "conveyor_queue_depth", queue="maintenance") == 2
    assert _value(families["conveyor_workers"], "conveyor_workers", queue="maintenance") == 0
    assert _value(families["conveyor_redis_up"], "conveyor_redis_up") == 1


def test_a_roll_up_that_seals_an_hour_hands_it_over_without_a_dip_or_a_double_count(
    metrics_on, db, clean_redis, settings
):
    settings.JOBS_STATS_BACKFILL_HOURS = 2
    # Given customer jobs and canaries finished in this hour, counted live after the first roll-up
    now = timezone.now()
    for _ in range(3):
        _finished("csv-export", "csv-export", JobStatus.COMPLETED, now - timedelta(seconds=5), run_s=4)
    failed = _finished("csv-export", "csv-export", JobStatus.FAILED, now - timedelta(seconds=5), attempts=3)
    for _ in range(2):
        _finished("csv-export", "csv-export", JobStatus.COMPLETED, now - timedelta(seconds=5), origin="canary")
    roll_up(now)
    line = sealed_until()
    assert line is not None and line <= now - timedelta(seconds=5)
    live = _counters(_parse(_scrape_client()))
    # When later roll-ups seal that hour (its rows now read from its bucket)
    roll_up(now + 2 * HOUR)
    roll_up(now + 3 * HOUR)
    line = sealed_until()
    assert line is not None and line > now
    sealed = _counters(_parse(_scrape_client()))
    # Then every counter reads the same, origin by origin: nothing lost, nothing counted twice
    assert sealed == live
    completed = {"queue": "csv-export", "type": "csv-export", "status": "completed"}
    assert live[("conveyor_jobs_finished_total", frozenset({**completed, "origin": "customer"}.items()))] == 3
    assert live[("conveyor_jobs_finished_total", frozenset({**completed, "origin": "canary"}.items()))] == 2
    # And a sealed hour is never recounted, so a job retried since does not lower its counters
    retry(failed, extra_attempts=1)
    roll_up(now + 4 * HOUR)
    assert _counters(_parse(_scrape_client())) == sealed


def test_cleanup_keeps_the_buckets_and_hours_past_its_horizon_are_never_recounted(metrics_on, db, settings):
    # Given jobs that finished 40 days ago, rolled up while they were kept (retention 60 days)
    settings.JOBS_RETENTION_DAYS = 60
    settings.JOBS_STATS_BACKFILL_HOURS = 2
    long_ago = timezone.now() - timedelta(days=40)
    for _ in range(2):
        _finished("report", "maintenance", JobStatus.COMPLETED, long_ago, run_s=3)
    roll_up()
    assert roll_up_hour(long_ago) == 1
    before = _counters(_parse(_scrape_client()))
    # When retention drops to 30 days, the cleanup deletes them, and someone recounts their hour
    settings.JOBS_RETENTION_DAYS = 30
    assert run_cleanup()["jobs_pruned"] == 2
    assert roll_up_hour(long_ago) == 0
    roll_up()
    # Then their bucket is still there and the counters did not move
    assert JobStatsBucket.objects.get(hour=floor_hour(long_ago)).completed == 2
    after = _counters(_parse(_scrape_client()))
    assert after == before
    report = {"queue": "maintenance", "type": "report", "origin": "customer"}
    assert after[("conveyor_jobs_finished_total", frozenset({**report, "status": "completed"}.items()))] == 2


@pytest.mark.slow
def test_counters_only_rise_through_a_burst_a_roll_up_and_the_cleanup_and_agree_between_web_processes(
    metrics_on, pools, settings
):
    # Given old jobs in a sealed bucket, a second web process (uvicorn) and a worker pool
    settings.JOBS_RETENTION_DAYS = 60
    settings.JOBS_STATS_BACKFILL_HOURS = 2
    long_ago = timezone.now() - timedelta(days=40)
    for _ in range(3):
        _finished("report", "csv-export", JobStatus.COMPLETED, long_ago, run_s=7)
    roll_up()
    roll_up_hour(long_ago)
    server = WebServer(env={"METRICS_TOKEN": TOKEN}).start()
    try:
        first = _parse(_scrape_client())
        assert _counters(_parse(_scrape_server(server))) == _counters(first)
        pools("maintenance", threads=2)
        # When a burst of jobs runs: completed, failed for good, and one retried before it succeeds
        burst = [_job("test_record_run_maintenance", "record-run", seconds=0.1 * i) for i in range(6)]
        burst += [_job("test_record_run_maintenance", "record-run", fail=True) for _ in range(2)]
        burst.append(_job("test_fail_once_then_succeed", "fail-once"))
        for job in burst:
            wait_terminal(job, timeout=90)
        _wait_until_every_job_finished()  # the workers' boot canaries too
        after_burst = _parse(_scrape_client())
        # Then the burst is counted on top, and nothing went down
        _assert_none_went_down(_counters(first), _counters(after_burst))
        finished = after_burst["conveyor_jobs_finished"]
        record_run = {"queue": "maintenance", "type": "record-run", "origin": "customer"}
        assert _value(finished, "conveyor_jobs_finished_total", **record_run, status="completed") == 6
        assert _value(finished, "conveyor_jobs_finished_total", **record_run, status="failed") == 2
        fail_once = {"queue": "maintenance", "type": "fail-once", "origin": "customer"}
        assert _value(finished, "conveyor_jobs_finished_total", **fail_once, status="completed") == 1
        assert _value(after_burst["conveyor_job_retries"], "conveyor_job_retries_total", **fail_once) == 1
        durations = after_burst["conveyor_job_duration_seconds"]
        assert _value(durations, "conveyor_job_duration_seconds_count", **record_run) == 6
        old_reports = {"queue": "csv-export", "type": "report", "origin": "customer"}
        assert _value(durations, "conveyor_job_duration_seconds_count", **old_reports) == 3
        boot_canaries = {"queue": "maintenance", "type": "canary", "origin": "canary", "status": "completed"}
        assert _value(finished, "conveyor_jobs_finished_total", **boot_canaries) >= 1
        _assert_histograms_are_whole(after_burst)
        # When staff delete a completed job and retry a failed one from the admin before their hour is sealed
        deleted = Job.objects.filter(type="record-run", status=JobStatus.COMPLETED).first()
        failed = Job.objects.filter(type="record-run", status=JobStatus.FAILED).first()
        assert deleted is not None and failed is not None
        staff = Client()
        staff.force_login(cast(Any, UserFactory(is_staff=True, is_superuser=True)))
        for action, job in (("delete_jobs", deleted), ("retry_jobs", failed)):
            answer = staff.post("/admin/jobs/job/", {"action": action, "_selected_action": [str(job.pk)]}, follow=True)
            assert answer.status_code == 200 and "1 job(s)" in answer.content.decode()
        assert not Job.objects.filter(pk=deleted.pk).exists()
        after_admin = _parse(_scrape_client())
        wait_terminal(failed, timeout=90)  # fails again: a second finish, counted on top
        after_rerun = _parse(_scrape_client())
        # Then both first finishes are still counted, and the retried job's second one too
        _assert_none_went_down(_counters(after_burst), _counters(after_admin))
        _assert_none_went_down(_counters(after_admin), _counters(after_rerun))
        rerun_finished = after_rerun["conveyor_jobs_finished"]
        assert _value(rerun_finished, "conveyor_jobs_finished_total", **record_run, status="failed") == 3
        assert _value(rerun_finished, "conveyor_jobs_finished_total", **record_run, status="completed") == 6
        # When a roll-up seals the burst's hour, and the cleanup (retention 30 days) prunes the old jobs
        roll_up(timezone.now() + 2 * HOUR)
        sealed = _parse(_scrape_client())
        settings.JOBS_RETENTION_DAYS = 30
        assert run_cleanup()["jobs_pruned"] == 3
        roll_up_hour(long_ago)
        roll_up()
        last = _parse(_scrape_client())
        # Then no counter went down at any step, the histograms are whole, and both web processes agree
        _assert_none_went_down(_counters(after_rerun), _counters(sealed))
        _assert_none_went_down(_counters(sealed), _counters(last))
        assert _counters(last) == _counters(after_rerun)
        _assert_histograms_are_whole(last)
        assert _counters(_parse(_scrape_server(server))) == _counters(last)
    finally:
        server.stop()


def test_canary_latency_is_exported_in_seconds(metrics_on, db, clean_redis):
    now = timezone.now()
    Job.objects.create(
        type="canary",
        queue="email-sender",
        actor="canary_email_sender",
        status=JobStatus.COMPLETED,
        created_at=now - timedelta(seconds=2),
        started_at=now - timedelta(seconds=1.5),
        finished_at=now,
    )
    latency = _parse(_scrape_client())["conveyor_canary_latency_seconds"]
    assert _value(latency, "conveyor_canary_latency_seconds", queue="email-sender") == pytest.approx(0.5, abs=0.01)


def test_metrics_need_the_bearer_token(metrics_on, db):
    client = Client()
    missing = client.get("/metrics")
    assert missing.status_code == 401 and "Bearer" in missing.json()["detail"]
    assert missing["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 403 and wrong.json()["detail"]
    other_scheme = client.get("/metrics", HTTP_AUTHORIZATION=f"Token {TOKEN}")
    assert other_scheme.status_code == 401


def test_metrics_are_off_without_a_token(settings, db):
    settings.METRICS_TOKEN = ""
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything")
    assert response.status_code == 404 and "METRICS_TOKEN" in response.json()["detail"]
