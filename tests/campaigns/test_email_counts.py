"""Emails are counted as emails (sent, bounced, failed), not as the email jobs that sent them.

A campaign sent through real worker processes to a real SMTP server; the
campaigns app's counter (``register_work_counter``) is what the weekly report
and the console read: ``jobs`` never imports campaigns.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.ops.reports import build_weekly_report
from jobs.ops.stats import roll_up, totals_by_queue
from tests.campaigns.helpers import users
from tests.factories import EmailTemplateFactory, UserFactory
from tests.jobs.helpers import start, wait_status

FAST = {"EMAIL_RATE_LIMIT_PER_MINUTE": "1000000", "EMAIL_BATCH_SIZE": "3"}


@pytest.mark.slow
def test_a_campaigns_emails_are_counted_as_emails_sent_bounced_and_failed(pools, smtp, smtp_env):
    # Given seven recipients, one the server does not know and one whose message it refuses
    recipients = users(7)
    smtp.rcpt_replies[recipients[1].email] = "550 5.1.1 no such user"
    smtp.data_replies[recipients[2].email] = "554 5.6.0 content rejected"
    pools("email-sender", threads=2, env={**smtp_env, **FAST})
    # When a campaign sends to them, in batches of three (a parent and three child jobs)
    parent = start(
        "email-batch",
        UserFactory(is_staff=True),
        user_ids=[user.pk for user in recipients],
        template_id=EmailTemplateFactory().pk,
    )
    wait_status(parent, JobStatus.COMPLETED, timeout=60)
    assert Job.objects.filter(parent=parent).count() == 3
    now = timezone.now()
    start_, end = now - timedelta(hours=1), now + timedelta(minutes=1)
    # Then the weekly report counts the emails, not the four email jobs
    report = build_weekly_report(start_, end)
    queue, counts = report.counters["emails"]
    assert queue == "email-sender"
    assert counts == {"sent": 5, "bounced": 1, "failed": 1}
    assert "Emails (email-sender): 5 sent, 1 bounced, 1 failed" in report.as_text()
    # and its email-sender row counts the campaign's one job, its batches being child work
    assert report.rows["email-sender"]["jobs"] == 1
    assert report.other_work["child"]["jobs"] == 3
    # And the console shows the same counts
    roll_up()
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = admin.get("/admin/queues/")
    (emails,) = [counter for counter in response.context["counters"] if counter.name == "emails"]
    assert emails.counts == {"sent": 5, "bounced": 1, "failed": 1}
    page = response.content.decode()
    assert 'id="counter-emails"' in page and 'class="count-bounced"' in page
    assert totals_by_queue(start_, end)["email-sender"].completed == 1
