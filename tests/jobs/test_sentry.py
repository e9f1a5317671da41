"""Sentry: worker errors are reported, tagged with the job's id and type (a local HTTP server is the DSN)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobs.models import JobStatus
from tests.jobs.helpers import canary, wait_terminal
from tests.webhooks import WebhookReceiver
from tests.workers import wait_for


def _sentry_events(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    """Events in the envelopes Sentry's SDK posted (one JSON document per line)."""
    events = []
    for post in receiver.posts("/api/1/envelope/"):
        lines = post.body.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
    return events


@pytest.mark.slow
def test_worker_errors_reach_sentry_tagged_with_the_job(webhook, pools):
    # Given a worker pool reporting to a Sentry DSN served by a local HTTP server
    dsn = f"http://publickey@127.0.0.1:{webhook.port}/1"
    pools("maintenance", threads=1, env={"SENTRY_DSN": dsn})
    # When a canary fails for good
    job = wait_terminal(canary("maintenance", fail="permanent"))
    assert job.status == JobStatus.FAILED

    # Then Sentry receives an event tagged with the job's id and type
    def tagged() -> list[dict[str, Any]]:
        return [event for event in _sentry_events(webhook) if event.get("tags", {}).get("job_id") == str(job.pk)]

    (event,) = wait_for(tagged, 30, what="the Sentry event of the failed job")
    assert event["tags"]["job_type"] == "canary"
    assert event["tags"]["queue"] == "maintenance"
    assert "CanaryFailedPermanently" in json.dumps(event["exception"])
