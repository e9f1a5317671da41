"""Security: Sentry gets no local variables, no secrets and no expected outcomes (issue #16, point 7).

Real worker pools report to a Sentry DSN served by a local HTTP server
(``tests/webhooks.py``); the test reads the events the SDK posted.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobs.dispatch.services import build_job, cancel_job, create_jobs
from jobs.models import Job, JobStatus
from tests.jobs.helpers import canary, reload, wait_status, wait_terminal
from tests.webhooks import WebhookReceiver, sentry_events
from tests.workers import wait_for

pytestmark = pytest.mark.slow

# A fake password the test looks for in what Sentry receives; no server takes it.
SECRET = "hunter2-for-sentry-only"  # noqa: S105


def _sentry_pool(pools: Any, webhook: WebhookReceiver) -> None:
    pools("maintenance", threads=1, env={"SENTRY_DSN": f"http://publickey@127.0.0.1:{webhook.port}/1"})


def _job(actor: str, **arguments: Any) -> Job:
    job = build_job(job_type=actor, queue="maintenance", actor=actor, arguments={"queue": "maintenance", **arguments})
    return create_jobs([job])[0]


def _events_of(webhook: WebhookReceiver, job: Job) -> list[dict[str, Any]]:
    return [event for event in sentry_events(webhook) if str(job.pk) in json.dumps(event)]


def test_a_sentry_event_holds_no_local_variables_and_no_secret(webhook, pools):
    # Given a worker pool reporting to Sentry
    _sentry_pool(pools, webhook)

    # When a job fails for good holding a database URL with a password in a local
    # variable, in an object's repr, in its error's text and in its message's arguments
    job = wait_terminal(_job("test_fail_holding_a_secret", password=SECRET))
    assert job.status == JobStatus.FAILED

    # Then its Sentry event arrives, with a stack trace but no frame's variables
    (event,) = wait_for(lambda: _events_of(webhook, job), 30, what="the Sentry event of the failed job")
    frames = [
        frame for value in event["exception"]["values"] for frame in (value.get("stacktrace") or {}).get("frames", [])
    ]
    assert frames
    assert [frame for frame in frames if "vars" in frame] == []
    # And the secret appears nowhere in it, while the error still says what failed and where
    sent = json.dumps(event)
    assert SECRET not in sent
    assert "PermanentJobError" in sent
    assert "postgres://[Filtered]@db.internal:5432/conveyor" in sent


def test_retries_cancels_and_reschedules_are_not_reported_while_a_failure_for_good_is(webhook, pools):
    # Given a worker pool (one thread: jobs run one after the other) reporting to Sentry
    _sentry_pool(pools, webhook)

    # When a job fails once with a temporary error and succeeds on its retry
    retried = wait_terminal(_job("test_fail_once_then_succeed"))
    assert (retried.status, retried.attempts) == (JobStatus.COMPLETED, 2)
    # And a job is rescheduled by its rate limiter ("not now"), then runs
    rescheduled = wait_terminal(_job("test_reschedule_once", seconds=0.2))
    assert (rescheduled.status, rescheduled.attempts) == (JobStatus.COMPLETED, 1)
    # And a running job is cancelled
    cancelled = canary(seconds=30, steps=300)
    wait_for(lambda: reload(cancelled).progress > 0, what="the canary to report progress")
    cancel_job(cancelled)
    assert wait_status(cancelled, JobStatus.CANCELLED).status == JobStatus.CANCELLED
    # And, last, a job fails for good
    failed = wait_terminal(canary(fail="permanent"))
    assert failed.status == JobStatus.FAILED

    # Then the failure for good is reported (the control: this pool does report)...
    wait_for(lambda: _events_of(webhook, failed), 30, what="the Sentry event of the failed job")
    # ...and, since one thread ran the jobs in turn and the SDK sends its events in
    # order, the earlier jobs' events would have arrived before it: none did
    for job in (retried, rescheduled, cancelled):
        assert _events_of(webhook, job) == [], job.actor
    reported = {
        value["type"] for event in sentry_events(webhook) for value in event.get("exception", {}).get("values", [])
    }
    assert reported.isdisjoint({"TransientJobError", "Reschedule", "JobCancelled"}), reported
