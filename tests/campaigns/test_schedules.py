"""The daily digest schedule through the real path: "run now", the email-sender queue, a worker, SMTP."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module
from typing import Any

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus
from jobs.models import Job, JobStatus
from jobs.models.schedule import FireOutcome, Schedule
from jobs.ops.scheduling.firing import run_now
from tests.factories import UserFactory
from tests.jobs.helpers import wait_terminal
from tests.workers import wait_for

FAST = {"EMAIL_RATE_LIMIT_PER_MINUTE": "1000000"}
#: campaigns' own data migration makes the "daily digest" schedule.
DAILY_DIGEST: dict[str, Any] = import_module("campaigns.migrations.0004_daily_digest_schedule").SCHEDULE


def _daily_digest_schedule() -> Schedule:
    """The schedule as the migration makes it (a transactional test starts from an emptied database)."""
    return Schedule.objects.get_or_create(name=DAILY_DIGEST["name"], defaults=DAILY_DIGEST)[0]


def _job_of(owner, *, hours_ago: float, status: str = JobStatus.COMPLETED) -> Job:
    created = timezone.now() - timedelta(hours=hours_ago)
    return Job.objects.create(
        type="report", queue="maintenance", actor="report", owner=owner, status=status, created_at=created
    )


@pytest.mark.slow
def test_daily_digest_schedule_emails_only_users_with_activity(pools, smtp, smtp_env):
    # Given the default daily digest schedule and three active users:
    schedule = _daily_digest_schedule()
    assert (schedule.cron, schedule.job_type) == ("0 8 * * *", "email-digest")
    now = timezone.now()
    busy = UserFactory(last_login=now)
    _job_of(busy, hours_ago=2)
    _job_of(busy, hours_ago=3, status=JobStatus.FAILED)
    # one whose only job is older than a day, one who only logged in
    stale = UserFactory(last_login=now)
    _job_of(stale, hours_ago=30)
    idle = UserFactory(last_login=now)
    pools("email-sender", threads=2, env={**smtp_env, **FAST})
    # When staff run it now from the schedule
    fired = run_now(schedule)
    assert fired is not None and fired.outcome == FireOutcome.ENQUEUED and fired.job is not None
    assert fired.job.queue == "email-sender"
    job = wait_terminal(fired.job, timeout=90)
    # Then the job completed its day's digest campaign
    assert job.status == JobStatus.COMPLETED, job.error_message
    campaign = Campaign.objects.get(key=f"daily-digest:{now.date().isoformat()}")
    assert (campaign.status, campaign.total, campaign.sent) == (CampaignStatus.COMPLETED, 1, 1)
    # And exactly one email arrived, to the user with activity, with their summary
    wait_for(lambda: len(smtp.received) >= 1, timeout=10, what="the digest email")
    [email] = smtp.received
    assert email.to == busy.email
    assert email.subject == "Your day on Conveyor: 2 job(s)"
    assert "1 completed" in email.body and "1 failed" in email.body
    assert {stale.email, idle.email}.isdisjoint(smtp.addresses())
