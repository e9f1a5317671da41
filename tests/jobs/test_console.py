"""The console: the jobs admin (filters, search, actions), the hourly roll-up, /admin/queues/ and pausing."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import quote

import dramatiq
import pytest
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from bench.processes import start_logged
from bench.processes import stop as stop_process
from jobs.dispatch import registry
from jobs.dispatch.registry import JobType, register_job_type
from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobAttempt, JobStatus
from jobs.models.stats import JobStatsBucket
from jobs.ops.reconciler import reconcile_once
from jobs.ops.stats import DURATION_BOUNDS_S, floor_hour, histogram_percentile, queue_summary, roll_up, roll_up_hour
from jobs.web import paging
from jobs.worker.broker import ConveyorRedisBroker
from jobs.worker.middleware.presence import workers_key
from jobs.worker.pausing import pause_queue, paused_queues, resume_queue
from tests.factories import UserFactory
from tests.jobs.helpers import canary, reload, wait_terminal
from tests.services import free_port
from tests.workers import ROOT, database_url, wait_for

NOW = datetime(2026, 3, 4, 12, 30, tzinfo=UTC)


def _job(
    status: str = JobStatus.QUEUED, *, queue: str = "maintenance", job_type: str = "test-record-run", **fields: Any
) -> Job:
    # A customer's type: the queue figures count customer work only (canaries are system work).
    job = build_job(job_type=job_type, queue=queue, actor="canary_" + queue.replace("-", "_"), arguments={})
    job.status = status
    for key, value in fields.items():
        setattr(job, key, value)
    return create_jobs([job])[0]


def _finished(status: str, finished_at: datetime, seconds: float, **fields: Any) -> Job:
    return _job(status, started_at=finished_at - timedelta(seconds=seconds), finished_at=finished_at, **fields)


@pytest.fixture
def admin_client(db: None) -> Client:
    client = Client()
    client.force_login(cast(Any, UserFactory(is_staff=True, is_superuser=True)))
    return client


def _listed(client: Client, query: str) -> set[str]:
    response = client.get(f"/admin/jobs/job/?{query}")
    assert response.status_code == 200
    return {str(job.pk) for job in response.context["cl"].result_list}


# -- the jobs admin -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_filters_narrow_the_list_by_queue_type_status_and_owner(admin_client):
    owner = UserFactory()
    thumbnails = _job(queue="thumbnails", job_type="thumbnails")
    failed = _job(JobStatus.FAILED)
    owned = _job(owner=owner)
    assert _listed(admin_client, "queue=thumbnails") == {str(thumbnails.pk)}
    assert _listed(admin_client, "type=thumbnails") == {str(thumbnails.pk)}
    assert _listed(admin_client, "status__exact=failed") == {str(failed.pk)}
    assert _listed(admin_client, f"owner__id__exact={owner.pk}") == {str(owned.pk)}
    # With its offset: a naive time in the query makes Django warn (time zone support is on).
    since = quote((timezone.now() - timedelta(minutes=1)).isoformat(timespec="seconds"))
    assert str(thumbnails.pk) in _listed(admin_client, f"created_at__gte={since}")


@pytest.mark.django_db
def test_search_finds_a_job_by_id_and_error_text(admin_client):
    # Arguments are not searched at scale (tests/jobs/test_job_list_scale.py has the rest of the search).
    by_error = _job(JobStatus.FAILED, error_message="SMTP 550 mailbox unavailable")
    other = _job()
    assert _listed(admin_client, f"q={other.pk}") == {str(other.pk)}
    assert _listed(admin_client, "q=mailbox+unavailable") == {str(by_error.pk)}


@pytest.mark.django_db
def test_delete_action_deletes_finished_jobs_and_skips_unfinished_ones(admin_client):
    completed, active = _job(JobStatus.COMPLETED), _job(JobStatus.ACTIVE)
    parent = _job(JobStatus.FAILED)
    _job(JobStatus.QUEUED, parent=parent)  # a child still waiting keeps its parent
    response = admin_client.post(
        "/admin/jobs/job/",
        {"action": "delete_jobs", "_selected_action": [str(completed.pk), str(active.pk), str(parent.pk)]},
        follow=True,
    )
    assert "Deleted 1 job(s); skipped 2" in response.content.decode()
    assert not Job.objects.filter(pk=completed.pk).exists()
    assert Job.objects.filter(pk__in=[active.pk, parent.pk]).count() == 2


@pytest.mark.django_db
def test_the_admin_offers_no_unconditional_delete_and_refuses_deleting_a_running_job(admin_client):
    running = _job(JobStatus.ACTIVE)
    actions = [
        choice for choice, _ in admin_client.get("/admin/jobs/job/").context["action_form"].fields["action"].choices
    ]
    assert "delete_selected" not in actions and {"retry_jobs", "cancel_jobs", "delete_jobs"} <= set(actions)
    assert admin_client.get(f"/admin/jobs/job/{running.pk}/delete/").status_code == 403
    finished = _job(JobStatus.COMPLETED)
    assert admin_client.get(f"/admin/jobs/job/{finished.pk}/delete/").status_code == 200


@pytest.mark.django_db
def test_detail_page_shows_progress_arguments_result_attempts_and_family_escaped(admin_client):
    parent = _job(JobStatus.ACTIVE, progress=40, progress_data={"message": "page 4 of 10"})
    child = _job(
        JobStatus.FAILED,
        parent=parent,
        arguments={"name": "<img src=x onerror=alert(1)>"},
        result={"rows": 12},
        error_message="<b>boom</b>",
        traceback='Traceback\n  File "<html>"\nValueError: <script>x</script>',
        attempts=2,
    )
    JobAttempt.objects.create(job=child, number=1, outcome=JobAttempt.Outcome.FAILED, error="first <i>try</i>")
    page = admin_client.get(f"/admin/jobs/job/{child.pk}/change/").content.decode()
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x" in page
    assert "<b>boom</b>" not in page and "first &lt;i&gt;try&lt;/i&gt;" in page
    assert "&quot;rows&quot;: 12" in page
    assert f"/admin/jobs/job/{parent.pk}/change/" in page  # parent link
    parent_page = admin_client.get(f"/admin/jobs/job/{parent.pk}/change/").content.decode()
    assert f"/admin/jobs/job/{child.pk}/change/" in parent_page  # child link
    assert f"parent__id__exact={parent.pk}" in parent_page
    assert 'class="job-progress" style="width:40%' in parent_page and "page 4 of 10" in parent_page
    assert _listed(admin_client, f"parent__id__exact={parent.pk}") == {str(child.pk)}
    assert f'<iframe src="/jobs/{parent.pk}/"' in parent_page  # the live progress page


@pytest.mark.django_db
def test_unfiltered_list_of_a_huge_table_is_counted_from_statistics_and_filtered_lists_exactly(
    admin_client, monkeypatch
):
    for _ in range(3):
        _job()
    failed = _job(JobStatus.FAILED)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = 'jobs_job'::regclass")
        estimate = cursor.fetchone()[0]
    monkeypatch.setattr(paging, "EXACT_UP_TO", 2)  # as if the table were huge
    assert admin_client.get("/admin/jobs/job/").context["cl"].paginator.count == estimate
    filtered = admin_client.get("/admin/jobs/job/?status__exact=failed").context["cl"]
    assert filtered.paginator.count == 1 and [job.pk for job in filtered.result_list] == [failed.pk]


# -- the roll-up ----------------------------------------------------------------------------------


def _expected_from_rows(start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
    rows = Job.objects.filter(finished_at__gte=start, finished_at__lt=end)
    expected: dict[str, dict[str, Any]] = {}
    for queue in {job.queue for job in rows}:
        jobs = [job for job in rows if job.queue == queue]
        done = [job for job in jobs if job.status == JobStatus.COMPLETED]
        durations = sorted(
            (job.finished_at - job.started_at).total_seconds() for job in done if job.finished_at and job.started_at
        )
        expected[queue] = {
            "jobs": len(jobs),
            "succeeded": len(done),
            "failed": sum(job.status == JobStatus.FAILED for job in jobs),
            "avg": sum(durations) / len(durations) if durations else None,
            "p95": durations[math.ceil(0.95 * len(durations)) - 1] if durations else None,
        }
    return expected


def _slot_bounds(seconds: float) -> tuple[float, float]:
    lower = 0.0
    for bound in DURATION_BOUNDS_S:
        if seconds < bound:
            return lower, bound
        lower = bound
    return lower, math.inf


@pytest.mark.django_db
def test_roll_up_matches_the_job_rows(settings):
    # Given jobs that finished over several hours, on two queues, in every final state
    settings.JOBS_STATS_BACKFILL_HOURS = 6
    settings.JOBS_RETENTION_DAYS = 3650  # NOW is months back: keep its hours within the cleanup's horizon
    for index in range(40):
        _finished(JobStatus.COMPLETED, NOW - timedelta(minutes=7 * index), 0.05 + index * 0.7)
    for index in range(5):
        _finished(JobStatus.FAILED, NOW - timedelta(minutes=50 * index), 1.0, attempts=3)
    _finished(JobStatus.CANCELLED, NOW - timedelta(minutes=3), 0.2)
    for index in range(8):
        _finished(JobStatus.COMPLETED, NOW - timedelta(minutes=20 * index), 30 + index, queue="thumbnails")
    _job(JobStatus.QUEUED)  # not finished: never counted
    # When the roll-up runs
    roll_up(NOW)
    # Then the summary of those hours says what the rows say
    start, end = floor_hour(NOW) - timedelta(hours=5), floor_hour(NOW) + timedelta(hours=1)
    summary = queue_summary(start, end)
    for queue, expected in _expected_from_rows(start, end).items():
        got = summary[queue]
        assert (got["jobs"], got["succeeded"], got["failed"]) == (
            expected["jobs"],
            expected["succeeded"],
            expected["failed"],
        )
        assert got["avg_duration_s"] == pytest.approx(expected["avg"])
        lower, upper = _slot_bounds(expected["p95"])
        assert lower <= got["p95_duration_s"] <= upper
        assert got["success_rate"] == pytest.approx(expected["succeeded"] / expected["jobs"])
    assert summary["maintenance"]["cancelled"] == 1
    assert summary["email-sender"]["jobs"] == 0 and summary["email-sender"]["success_rate"] is None
    retried = sum(JobStatsBucket.objects.values_list("retried", flat=True))
    assert retried == 5


@pytest.mark.django_db
def test_roll_up_is_idempotent_and_recounts_the_previous_hour_for_late_commits(settings):
    settings.JOBS_STATS_BACKFILL_HOURS = 2
    settings.JOBS_RETENTION_DAYS = 3650  # NOW is months back: keep its hours within the cleanup's horizon
    _finished(JobStatus.COMPLETED, NOW - timedelta(minutes=10), 2)
    roll_up(NOW)
    first = list(JobStatsBucket.objects.values("hour", "queue", "type", "completed", "duration_histogram"))
    roll_up(NOW)
    roll_up_hour(NOW)
    assert list(JobStatsBucket.objects.values("hour", "queue", "type", "completed", "duration_histogram")) == first
    # A job of the previous hour that committed after the hour turned is counted by the next run
    later = NOW + timedelta(hours=1)
    _finished(JobStatus.COMPLETED, floor_hour(later) - timedelta(seconds=1), 2)
    roll_up(later)
    assert JobStatsBucket.objects.get(hour=floor_hour(NOW)).completed == 2


@pytest.mark.slow
def test_the_scheduler_rolls_up_finished_jobs_as_a_duty(transactional_db, clean_redis):
    # Given a finished job and a real scheduler process rolling up every half second
    _finished(JobStatus.COMPLETED, timezone.now(), 1)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": database_url(),
        "JOBS_STATS_ROLLUP_INTERVAL_S": "0.5",
        "JOBS_STATS_BACKFILL_HOURS": "2",
    }
    scheduler = start_logged(
        [sys.executable, "manage.py", "runscheduler", "--refresh-seconds", "60"],
        ROOT / "var" / f"test-scheduler-stats-{os.getpid()}.log",
        env,
    )
    try:
        # Then the job is counted, and so is one that finishes while it runs
        completed = lambda: sum(JobStatsBucket.objects.values_list("completed", flat=True))  # noqa: E731
        wait_for(lambda: completed() == 1, what="the scheduler's first roll-up")
        _finished(JobStatus.COMPLETED, timezone.now(), 1)
        wait_for(lambda: completed() == 2, what="the next roll-up")
    finally:
        stop_process(scheduler)


def test_percentile_is_read_from_the_histogram_slot():
    histogram = [0] * (len(DURATION_BOUNDS_S) + 1)
    histogram[3] = 100  # every job took between 0.5 s and 1 s
    assert 0.5 <= histogram_percentile(histogram, 0.95) <= 1.0
    assert histogram_percentile([0] * len(histogram), 0.95) is None


# -- /admin/queues/ -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_queue_page_shows_every_queue_with_counts_charts_and_pause_buttons(admin_client, clean_redis, settings):
    settings.JOBS_STATS_BACKFILL_HOURS = 3
    now = timezone.now()
    _job(JobStatus.QUEUED)
    _job(JobStatus.RETRYING)
    _finished(JobStatus.COMPLETED, now - timedelta(minutes=1), 0.3)
    _finished(JobStatus.FAILED, now - timedelta(minutes=1), 0.3)
    roll_up()
    response = admin_client.get("/admin/queues/")
    assert response.status_code == 200
    page = response.content.decode()
    rows = {row.name: row for row in response.context["rows"]}
    assert set(rows) == {"pdf-processing", "email-sender", "csv-export", "thumbnails", "maintenance"}
    maintenance = rows["maintenance"]
    assert maintenance.counts["queued"] == 1 and maintenance.counts["retrying"] == 1
    assert (maintenance.last_24h.completed, maintenance.last_24h.failed) == (1, 1)
    assert maintenance.paused is False and maintenance.avg_duration == "300 ms"
    assert page.count('class="throughput-chart"') == 10  # 24 h and 7 days for each queue
    assert "Pause queue" in page and "csrfmiddlewaretoken" in page


def _send_for(owner: Any, count: int, *, queue: str = "thumbnails", job_type: str = "thumbnails") -> None:
    jobs = [
        build_job(job_type=job_type, queue=queue, actor="make_thumbnails", arguments={}, owner=owner)
        for _ in range(count)
    ]
    with transaction.atomic():
        create_jobs(jobs)  # sent to Redis on commit


@pytest.mark.django_db(transaction=True)
def test_queue_page_shows_each_queues_cap_and_busiest_owners_by_name(admin_client, clean_redis):
    # Given, on the thumbnails queue, three jobs of one customer, one of which a worker has fetched,
    # then one job of another customer; and a job nobody asked for on the maintenance queue
    broker = cast(Any, dramatiq.get_broker())
    busy, other = UserFactory(username="busy-customer"), UserFactory(username="other-customer")
    _send_for(busy, 3)
    assert len(broker.ack_and_fetch("thumbnails", [], 1)) == 1  # nobody else waits: busy's
    _send_for(other, 1)
    _send_for(None, 1, queue="maintenance", job_type="canary")
    # When staff open the queue overview
    response = admin_client.get("/admin/queues/")
    # Then each queue shows the queue table's cap, and its busiest owners by name with their counts
    rows = {row.name: row for row in response.context["rows"]}
    assert (rows["email-sender"].max_per_owner, rows["csv-export"].max_per_owner) == (3, 0)
    assert [(o.name, o.waiting, o.running) for o in rows["thumbnails"].busiest_owners] == [
        ("busy-customer <busy-customer@example.com>", 2, 1),
        ("other-customer <other-customer@example.com>", 1, 0),
    ]
    assert [(o.name, o.waiting, o.running) for o in rows["maintenance"].busiest_owners] == [("system", 1, 0)]
    page = response.content.decode()
    section = page[page.index('id="owners-thumbnails"') : page.index('id="section-maintenance"')]
    assert "busy-customer &lt;busy-customer@example.com&gt;" in section
    assert '<td class="count owner-waiting">2</td><td class="count owner-running">1</td>' in section
    assert "other-customer &lt;other-customer@example.com&gt;" in section
    assert '<td class="max-per-owner">3</td>' in page and '<td class="max-per-owner">none</td>' in page
    assert "Nothing waiting or running." in page  # csv-export


@pytest.mark.django_db
def test_queue_page_is_for_staff_with_the_jobs_permission_only(clean_redis):
    anonymous = Client().get("/admin/queues/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")
    user = Client()
    user.force_login(UserFactory())
    assert user.get("/admin/queues/").status_code == 302
    staff_user = UserFactory(is_staff=True)
    staff = Client()
    staff.force_login(staff_user)
    assert staff.get("/admin/queues/").status_code == 403
    assert staff.post("/admin/queues/maintenance/pause").status_code == 403
    staff_user.user_permissions.add(Permission.objects.get(codename="view_job"))
    assert staff.get("/admin/queues/").status_code == 200
    assert staff.post("/admin/queues/maintenance/pause").status_code == 403  # viewing is not pausing
    assert paused_queues() == set()


@pytest.mark.django_db
def test_pause_and_resume_buttons_need_csrf_and_name_a_known_queue(clean_redis):
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast(Any, UserFactory(is_staff=True, is_superuser=True)))
    assert client.post("/admin/queues/maintenance/pause").status_code == 403  # no CSRF token
    page = client.get("/admin/queues/")
    token = page.cookies["csrftoken"].value
    response = client.post("/admin/queues/maintenance/pause", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and paused_queues() == {"maintenance"}
    rows = {row.name: row for row in client.get("/admin/queues/").context["rows"]}
    assert rows["maintenance"].paused is True and rows["thumbnails"].paused is False
    unknown = client.post("/admin/queues/nope/pause", {"csrfmiddlewaretoken": token}, follow=True)
    assert unknown.redirect_chain == [("/admin/queues/", 302)]
    assert _messages(unknown) == [("error", "There is no queue 'nope': nothing was changed.")]
    assert client.get("/admin/queues/maintenance/resume").status_code == 405
    client.post("/admin/queues/maintenance/resume", {"csrfmiddlewaretoken": token})
    assert paused_queues() == set()


@pytest.fixture
def redis_down() -> Iterator[None]:
    """This process's broker points at a port where no Redis listens."""
    previous = dramatiq.get_broker()
    dramatiq.set_broker(
        ConveyorRedisBroker(url=f"redis://127.0.0.1:{free_port()}/0", namespace="unreachable", middleware=[])
    )
    yield
    dramatiq.set_broker(previous)


@pytest.mark.django_db
def test_queue_page_still_answers_when_redis_is_down_and_pausing_says_why(admin_client, redis_down):
    page = admin_client.get("/admin/queues/")
    assert page.status_code == 200 and "Redis is unreachable" in page.content.decode()
    assert all(row.paused is None and row.depth is None for row in page.context["rows"])
    response = admin_client.post("/admin/queues/maintenance/pause", follow=True)
    assert response.redirect_chain == [("/admin/queues/", 302)]
    assert _messages(response) == [
        ("error", "Could not pause queue maintenance: Redis is unreachable, the queue was not changed.")
    ]
    data = admin_client.get("/admin/queues/live.json").json()
    assert data["redis_ok"] is False and data["reconciler"] is None
    assert all(queue["paused"] is None and queue["depth"] is None for queue in data["queues"])


def _messages(response: Any) -> list[tuple[str, str]]:
    """The admin messages a page shows, as (level, text)."""
    return [(message.level_tag, str(message)) for message in response.context["messages"]]


@pytest.mark.django_db
def test_pausing_and_resuming_answer_with_an_admin_message(admin_client, clean_redis):
    paused = admin_client.post("/admin/queues/maintenance/pause", follow=True)
    assert _messages(paused) == [("warning", "Queue maintenance paused: its jobs wait until you resume it.")]
    resumed = admin_client.post("/admin/queues/maintenance/resume", follow=True)
    assert _messages(resumed) == [("success", "Queue maintenance resumed.")]
    assert b"Queue maintenance resumed." in resumed.content


@pytest.mark.django_db
def test_live_data_of_the_queue_page_has_the_numbers_workers_charts_and_the_reconcilers_last_run(
    admin_client, clean_redis, settings
):
    # Given a waiting job, a finished one rolled up, a paused queue and a reconciler pass
    settings.JOBS_STATS_BACKFILL_HOURS = 3
    _job(JobStatus.QUEUED)
    _finished(JobStatus.COMPLETED, timezone.now() - timedelta(minutes=1), 0.3)
    roll_up()
    pause_queue("thumbnails")
    report = reconcile_once()
    # When the open page asks for its refresh
    response = admin_client.get("/admin/queues/live.json")
    # Then it has every queue's numbers, state and charts, and the reconciler's last run
    assert response.status_code == 200
    data = response.json()
    queues = {queue["name"]: queue for queue in data["queues"]}
    maintenance = queues["maintenance"]
    assert maintenance["counts"] == {"queued": 1, "scheduled": 0, "active": 0, "retrying": 0}
    assert (maintenance["completed_24h"], maintenance["failed_24h"], maintenance["avg_duration"]) == (1, 0, "300 ms")
    assert maintenance["paused"] is False and queues["thumbnails"]["paused"] is True
    assert maintenance["workers"] == [] and maintenance["busiest_owners"] == []
    assert maintenance["chart_24h"].startswith('<svg class="throughput-chart"')
    assert data["redis_ok"] is True
    assert data["reconciler"]["ran"] is True and data["reconciler"]["ok"] is True
    assert re.fullmatch(r"last run \d+ s ago, took \d+\.\d\d s: .+", data["reconciler"]["text"])
    assert data["reconciler"]["text"].endswith(": " + report.summary())
    # and the system work, the apps' counters and the schedulers (none running here)
    other = {work["origin"]: work["cells"] for work in data["other_work"]}
    assert "customer" not in other and set(other) >= {"child", "canary", "maintenance"}
    assert {counter["name"] for counter in data["counters"]} == {"emails"}
    assert data["schedulers"] == []


@pytest.mark.django_db
def test_queue_page_says_when_no_reconciler_ran_and_shows_a_failed_pass_with_its_reason(admin_client, clean_redis):
    # Given no scheduler has run the reconciler yet
    page = admin_client.get("/admin/queues/")
    # Then the page says so
    assert "no run recorded: is a scheduler (manage.py runscheduler) running?" in page.content.decode()

    # Given a domain app's unsettled() that breaks, so that a reconciler pass fails
    def broken() -> list[str]:
        raise RuntimeError("unsettled() is broken")

    register_job_type(
        JobType(
            name="test-broken-unsettled",
            queue="maintenance",
            actor="canary_maintenance",
            serializer=None,
            description="test only",
            unsettled=broken,
        )
    )
    try:
        with pytest.raises(RuntimeError):
            reconcile_once()
    finally:
        registry._registry.pop("test-broken-unsettled")
    # When staff open the page
    page = admin_client.get("/admin/queues/")
    # Then it shows the failed pass and why, marked as failed
    reconciler = page.context["reconciler"]
    assert (reconciler.ran, reconciler.ok) == (True, False)
    assert reconciler.outcome == "failed: RuntimeError: unsettled() is broken"
    assert 'class="duty-text duty-failed"' in page.content.decode()


@pytest.mark.django_db
def test_live_data_of_the_queue_page_is_for_those_who_may_see_the_page(clean_redis):
    assert Client().get("/admin/queues/live.json").status_code == 302  # to the admin's login
    staff = Client()
    staff.force_login(UserFactory(is_staff=True))
    assert staff.get("/admin/queues/live.json").status_code == 403


# -- pausing with real workers --------------------------------------------------------------------


def _announced_queues() -> set[str]:
    """Queues whose consumers have started in some worker process (their presence entries)."""
    broker: Any = dramatiq.get_broker()
    entries = broker.client.hvals(workers_key(broker.namespace))
    return {queue for raw in entries for queue in json.loads(raw).get("queues", [])}


@pytest.mark.slow
def test_a_paused_queue_keeps_its_jobs_until_resumed(pools):
    # Given the maintenance queue paused, and running workers for it and for thumbnails
    pause_queue("maintenance")
    pools("maintenance")
    pools("thumbnails")
    wait_for(lambda: {"maintenance", "thumbnails"} <= _announced_queues(), what="both pools to consume")
    # When a canary is sent to each queue
    waiting = canary("maintenance")
    other = canary("thumbnails")
    # Then the unpaused queue runs its canary while the paused one keeps its own waiting, in Redis
    assert wait_terminal(other).status == JobStatus.COMPLETED
    assert reload(waiting).status == JobStatus.QUEUED
    assert str(waiting.pk) in cast(Any, dramatiq.get_broker()).message_ids_in_redis("maintenance")
    # When the queue is resumed, its job runs
    resume_queue("maintenance")
    assert wait_terminal(waiting).status == JobStatus.COMPLETED


# -- schedulers on /admin/queues/ ------------------------------------------------------------------


@pytest.mark.slow
def test_the_queue_overview_lists_each_scheduler_with_its_host_pid_last_beat_and_state(
    admin_client, transactional_db, clean_redis
):
    from jobs.web.console import scheduler_rows
    from tests.jobs.test_scheduling import SchedulerRun

    # Given two scheduler processes, one of which is then killed
    live, killed = SchedulerRun("console-live").start(), SchedulerRun("console-killed").start()
    try:
        assert live.proc is not None and killed.proc is not None
        wait_for(lambda: len(scheduler_rows() or []) == 2, what="both schedulers to beat")
        killed.kill()
        wait_for(lambda: [row["live"] for row in scheduler_rows() or []] == [True, False], 30, what="one down")
        # When staff open the queue overview
        page = admin_client.get("/admin/queues/").content.decode()
    finally:
        live.stop()
    # Then its schedulers block shows each one: host, pid, last beat and live or down
    block = page[page.index('id="schedulers"') :]
    block = block[: block.index("</table>")]
    rows = block.split('<tr class="scheduler ')[1:]
    assert [row.split('"', 1)[0] for row in rows] == ["live", "down"]
    assert f"<td>{live.proc.pid}</td>" in rows[0] and f"<td>{killed.proc.pid}</td>" in rows[1]
    assert all(f"<td>{os.uname().nodename}</td>" in row and " s ago</td>" in row for row in rows)
