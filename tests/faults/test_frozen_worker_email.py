"""A worker frozen (SIGSTOP) mid email batch past the heartbeat timeout: the batch is taken over,
and when the frozen run wakes it writes nothing more; every recipient gets exactly one email.

Two email-sender pools of one process each (real Redis, PostgreSQL and an aiosmtpd server), a
heartbeat timeout of 6 s. The process sending the batch is frozen for 15 s: the other one takes
the job over (attempt 2) and sends the rest. The row the frozen run held ``sending`` (its last
message, already handed to the server) is in doubt: the take-over does not send it again, the
frozen run records it itself when it wakes, then its next claim or the watchdog stops it
(``RunSuperseded``). Before fencing (issue 17) the take-over sent that row again: a duplicate.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

import psutil
import pytest

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from jobs.models import Job, JobStatus
from tests.campaigns.conftest import smtp, smtp_env, smtp_server  # noqa: F401 - the SMTP sink's fixtures
from tests.campaigns.helpers import users
from tests.factories import EmailTemplateFactory, UserFactory
from tests.faults.results import record
from tests.jobs.helpers import start, wait_status
from tests.workers import WorkerPool, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

RECIPIENTS = 30
FREEZE_S = 15.0
ENV = {
    "DRAMATIQ_HEARTBEAT_TIMEOUT_MS": "6000",
    "DRAMATIQ_HEARTBEAT_INTERVAL_MS": "1000",
    "DRAMATIQ_MAINTENANCE_INTERVAL_MS": "1000",
    # 3 emails per 1.2 s (window and guard): the batch takes ~12 s unhindered.
    "EMAIL_RATE_LIMIT_PER_MINUTE": "3",
    "EMAIL_RATE_LIMIT_WINDOW_S": "1",
    "EMAIL_RATE_LIMIT_GUARD_S": "0.2",
    # Well past the freeze: the take-over first sees the row in doubt ~7 s into the freeze, so the
    # default (twice the heartbeat timeout, 12 s) leaves 4 s for the woken run to record it; on a
    # busy machine that is too little to assert on.
    "EMAIL_IN_DOUBT_GRACE_S": "20",
}


def _sender(pools: list[WorkerPool], port: int) -> psutil.Process | None:
    """The worker process with a connection open to the SMTP server: the one sending the batch."""
    for pool in pools:
        for process in pool.worker_processes():
            try:
                if any(c.raddr and c.raddr.port == port for c in process.net_connections(kind="tcp")):
                    return process
            except psutil.NoSuchProcess:
                continue
    return None


def test_a_frozen_worker_mid_batch_sends_no_email_twice(pools, smtp, smtp_server, smtp_env):  # noqa: F811
    # Given two email-sender processes (a pool each) and a campaign of 30 recipients sending
    started = [pools("email-sender", threads=1, env={**smtp_env, **ENV}) for _ in range(2)]
    recipients = users(RECIPIENTS)
    parent = start(
        "email-batch",
        UserFactory(is_staff=True),
        user_ids=[user.pk for user in recipients],
        template_id=EmailTemplateFactory().pk,
    )
    wait_for(lambda: len(smtp.received) >= 5, timeout=40, interval=0.05, what="the batch to be under way")
    [child] = Job.objects.filter(parent=parent)
    sender = wait_for(lambda: _sender(started, smtp_server[1]), timeout=10, what="the sending process")
    # When the process sending the batch is frozen past the heartbeat timeout
    sender.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        # Then the other process takes the job over while it is frozen
        wait_for(lambda: _reload(child).attempts == 2, timeout=FREEZE_S, interval=0.2, what="the take-over")
        time.sleep(max(0.0, FREEZE_S - (time.monotonic() - frozen_at)))
    finally:
        # And the frozen process wakes up
        os.kill(sender.pid, signal.SIGCONT)
    wait_status(parent, JobStatus.COMPLETED, timeout=60)
    recovered = time.monotonic() - frozen_at
    received = smtp.per_delivery()
    twice = sum(n - 1 for n in received.values())
    record(
        "worker frozen (SIGSTOP) mid email batch",
        jobs=1,
        lost=RECIPIENTS - len(received),
        ran_twice=twice,
        recover_s=recovered,
        bound="0 emails",
    )
    # Every recipient got exactly one email: none lost, none sent twice
    assert twice == 0, {tag: n for tag, n in received.items() if n > 1}
    assert len(received) == RECIPIENTS
    # The campaign completed once, every delivery sent
    campaign = Campaign.objects.get(job=parent)
    assert (campaign.status, campaign.sent, campaign.total) == (CampaignStatus.COMPLETED, RECIPIENTS, RECIPIENTS)
    assert set(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)) == {DeliveryStatus.SENT}
    # The batch ran twice as a job (attempt 2 took it over) and completed once, at 100 %
    child = _reload(child)
    assert (child.status, child.attempts, child.progress) == (JobStatus.COMPLETED, 2, 100)
    # Each delivery names the run that sent it: the frozen run's rows (among them the one in
    # doubt, which it recorded itself on waking) and the take-over's, nothing else
    tokens = Counter(Delivery.objects.filter(campaign=campaign).values_list("claimed_by", flat=True))
    assert set(tokens) == {f"{child.id}:1", f"{child.id}:2"}, tokens
    assert tokens[f"{child.id}:1"] >= 5
    # And the woken run was stopped rather than writing on: its pool says so
    wait_for(
        lambda: any("was taken over by another worker" in pool.log() for pool in started),
        timeout=20,
        what="the woken run to stop",
    )


def _reload(job: Job) -> Any:
    job.refresh_from_db()
    return job
