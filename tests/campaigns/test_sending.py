"""One batch against a real SMTP server, in this process: every delivery status, exactly once."""

from __future__ import annotations

from email.header import decode_header, make_header

import pytest

from campaigns.exceptions import SendingDeferred, SmtpUnavailable
from campaigns.models import Delivery, DeliveryStatus
from campaigns.sending import send_batch
from campaigns.smtp import DELIVERY_HEADER
from tests.campaigns.helpers import campaign_for, delivery_ids, statuses, users
from tests.databases import postgresql_only
from tests.factories import EmailTemplateFactory


@pytest.fixture(autouse=True)
def _no_rate_limit(settings, clean_redis):
    settings.EMAIL_RATE_LIMIT_PER_MINUTE = 0


def test_accepted_message_is_sent_with_the_servers_answer_and_rendered_for_its_user(db, smtp):
    # Given a campaign to one user
    [alice] = users(1, username="alice")
    campaign = campaign_for([alice], EmailTemplateFactory(subject="Hi {{ recipient.username }}"))
    # When its batch runs
    outcome = send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    # Then the server got one message, rendered for alice, and the delivery says so
    assert outcome.sent == 1
    [received] = smtp.received
    assert (received.to, received.subject) == ("alice@example.com", "Hi alice")
    assert "Dear alice, news from test campaign." in received.body
    delivery = Delivery.objects.get(campaign=campaign)
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.smtp_response.startswith("250")
    assert delivery.sent_at is not None and delivery.attempts == 1


def test_recipient_refused_with_5xx_bounces_and_the_batch_goes_on(db, smtp):
    a, b, c = users(3)
    smtp.rcpt_replies[b.email] = "550 5.1.1 no such user"
    campaign = campaign_for([a, b, c])
    outcome = send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    assert (outcome.sent, outcome.bounced) == (2, 1)
    assert statuses(campaign) == {a.email: "sent", b.email: "bounced", c.email: "sent"}
    assert Delivery.objects.get(email=b.email).smtp_response == "550 5.1.1 no such user"


def test_message_refused_with_5xx_at_data_fails_and_the_batch_goes_on(db, smtp):
    a, b = users(2)
    smtp.data_replies[a.email] = "554 5.6.0 content rejected"
    campaign = campaign_for([a, b])
    send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    assert statuses(campaign) == {a.email: "failed", b.email: "sent"}


def test_invalid_address_fails_without_reaching_the_server(db, smtp):
    good, bad = users(2)
    campaign = campaign_for([good, bad])
    Delivery.objects.filter(email=bad.email).update(email="not an address\n@x")
    send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    assert sorted(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)) == [
        "failed",
        "sent",
    ]
    assert Delivery.objects.get(user=bad).smtp_response.startswith("invalid address")
    assert smtp.addresses() == [good.email]


def test_temporary_refusal_leaves_the_recipient_pending_and_reschedules_the_batch(db, smtp):
    # Given a recipient greylisted once
    a, b = users(2)
    smtp.rcpt_temporary[a.email] = 1
    campaign = campaign_for([a, b])
    # When the batch runs, it sends what it can and asks to run again later
    with pytest.raises(SendingDeferred):
        send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    assert statuses(campaign) == {a.email: "pending", b.email: "sent"}
    # When it runs again, the greylisted one goes, and the other is not sent twice
    outcome = send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    assert (outcome.sent, outcome.skipped) == (1, 1)
    assert sorted(smtp.addresses()) == sorted([a.email, b.email])
    assert Delivery.objects.get(email=a.email).attempts == 2


def test_temporary_refusal_fails_after_the_last_attempt(db, smtp, settings):
    settings.EMAIL_MAX_ATTEMPTS_PER_RECIPIENT = 2
    [a] = users(1)
    smtp.rcpt_temporary[a.email] = 5
    campaign = campaign_for([a])
    with pytest.raises(SendingDeferred):
        send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    delivery = Delivery.objects.get(email=a.email)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.smtp_response.startswith("gave up after 2 attempts: 451")


def test_dropped_connection_is_reopened_and_the_recipient_sent_once(db, smtp):
    # Given the server drops the connection at the second recipient, once
    a, b, c = users(3)
    smtp.drops[b.email] = 1
    campaign = campaign_for([a, b, c])
    # When the batch runs
    outcome = send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    # Then it reconnected once, and everyone got exactly one email
    assert outcome.reconnects == 1 and outcome.sent == 3
    assert sorted(smtp.addresses()) == sorted([a.email, b.email, c.email])
    assert smtp.connections == 2


def test_batch_reuses_one_connection_for_all_its_messages(db, smtp):
    campaign = campaign_for(users(20))
    send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    assert len(smtp.received) == 20
    assert smtp.connections == 1


def test_redelivered_batch_skips_recipients_already_sent(db, smtp):
    # Given a batch whose first run sent everyone
    recipients = users(3)
    campaign = campaign_for(recipients)
    send_batch(campaign.pk, delivery_ids(campaign), token="job-1")
    # When the same batch (or another one holding the same rows) runs again
    outcome = send_batch(campaign.pk, delivery_ids(campaign), token="job-2")
    # Then nobody gets a second email
    assert outcome.sent == 0 and outcome.skipped == 3
    assert len(smtp.received) == 3


def test_row_left_sending_by_this_jobs_dead_run_is_sent_again_but_not_by_another_job(db, smtp):
    # Given two rows left "sending": one by this job's earlier run, one by another job
    mine, theirs, fresh = users(3)
    campaign = campaign_for([mine, theirs, fresh])
    Delivery.objects.filter(email=mine.email).update(status="sending", claimed_by="job-1", attempts=1)
    Delivery.objects.filter(email=theirs.email).update(status="sending", claimed_by="job-9", attempts=1)
    # When job-1 is redelivered
    outcome = send_batch(campaign.pk, delivery_ids(campaign), token="job-1")
    # Then it sends its own doubtful row again and leaves the other job's alone
    assert outcome.reclaimed == 1
    assert sorted(smtp.addresses()) == sorted([mine.email, fresh.email])
    assert statuses(campaign)[theirs.email] == "sending"


def test_no_server_is_an_infrastructure_failure_and_nothing_is_claimed(db, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    campaign = campaign_for(users(2))
    with pytest.raises(SmtpUnavailable):
        send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    assert set(statuses(campaign).values()) == {"pending"}


def test_template_that_fails_to_render_fails_its_deliveries(db, smtp):
    template = EmailTemplateFactory(body_text="{% if %}")
    campaign = campaign_for(users(2), template)
    outcome = send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    assert outcome.failed == 2 and smtp.received == []
    assert Delivery.objects.filter(smtp_response__startswith="template error").count() == 2


def test_rate_limit_reached_reschedules_the_batch_without_sending_more(db, smtp, settings):
    # Given a limit of 2 per minute and a batch of 3
    settings.EMAIL_RATE_LIMIT_PER_MINUTE = 2
    settings.EMAIL_RATE_LIMIT_MAX_WAIT_S = 0.1
    campaign = campaign_for(users(3))
    # When the batch runs
    with pytest.raises(SendingDeferred) as deferred:
        send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    # Then two went, the third waits as pending, and the batch asks to run after the window
    assert len(smtp.received) == 2
    assert sorted(statuses(campaign).values()) == ["pending", "sent", "sent"]
    assert deferred.value.delay_s > 1


def test_non_ascii_subject_and_body_arrive_intact_over_smtp(db, smtp):
    # Given a template with non-ASCII text, rendered for a user
    [zoe] = users(1, username="zoë")
    template = EmailTemplateFactory(
        subject="Grüße, {{ recipient.username }} ✓", body_text="Liebe {{ recipient.username }},\nbis bald."
    )
    campaign = campaign_for([zoe], template)
    # When its batch runs
    send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    # Then the server got it, readable as written
    [received] = smtp.received
    assert str(make_header(decode_header(received.subject))) == "Grüße, zoë ✓"
    assert received.body == "Liebe zoë,\r\nbis bald."


def test_body_with_a_line_over_998_octets_is_sent_through_djangos_encoder(db, smtp):
    long_line = "x" * 1500
    campaign = campaign_for(users(1), EmailTemplateFactory(body_text=long_line))
    outcome = send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    assert outcome.sent == 1
    [received] = smtp.received
    assert received.body == long_line


def test_without_an_smtp_backend_the_message_goes_through_djangos_backend(db, mailoutbox):
    # Given the locmem backend (no SMTP connection to write to)
    [alice] = users(1, username="alice")
    campaign = campaign_for([alice])
    # When the batch runs
    outcome = send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    # Then Django's backend got the message with both parts, and the delivery is sent
    assert outcome.sent == 1
    [message] = mailoutbox
    assert (message.to, message.subject) == (["alice@example.com"], "Hello alice")
    assert message.alternatives[0][1] == "text/html"
    assert message.extra_headers[DELIVERY_HEADER] == f"{campaign.pk}/{delivery_ids(campaign)[0]}"
    assert statuses(campaign) == {alice.email: "sent"}


def _synchronous_commit() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


@postgresql_only("synchronous_commit")
def test_status_writes_commit_asynchronously_during_a_batch_only(db, smtp, settings):
    # Given a batch of three that reports after every message, on the default setting
    settings.EMAIL_PROGRESS_INTERVAL_S = 0
    campaign = campaign_for(users(3))
    seen: list[str] = []
    # When it runs
    outcome = send_batch(
        campaign.pk, delivery_ids(campaign), token="t1", report=lambda *_: seen.append(_synchronous_commit())
    )
    # Then its connection committed without waiting for the flush while it sent, and waits again after
    assert outcome.sent == 3
    assert seen == ["off", "off", "on"]  # the last report comes after the batch
    assert _synchronous_commit() == "on"


@postgresql_only("synchronous_commit")
def test_status_writes_wait_for_the_flush_when_asynchronous_commits_are_off(db, smtp, settings):
    settings.EMAIL_PROGRESS_INTERVAL_S = 0
    settings.EMAIL_DELIVERY_ASYNC_COMMIT = False
    campaign = campaign_for(users(2))
    seen: list[str] = []
    send_batch(campaign.pk, delivery_ids(campaign), token="t1", report=lambda *_: seen.append(_synchronous_commit()))
    assert seen and set(seen) == {"on"}
