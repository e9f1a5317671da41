"""Fencing of deliveries (issue 17): a run whose job was taken over claims nothing, and the
run that took over never resends a row the earlier run may still record (in this process,
against a real SMTP server and PostgreSQL)."""

from __future__ import annotations

import threading
import time

import pytest

from campaigns.deliveries import OutcomeWriter
from campaigns.models import Delivery, DeliveryStatus
from campaigns.sending import send_batch
from jobs.core.exceptions import RunSuperseded
from jobs.state.fencing import current_fence
from tests.campaigns.helpers import campaign_for, delivery_ids, statuses, users
from tests.fencing import HOLDER, STALE, running_as, taken_over

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_rate_limit(settings, clean_redis):
    settings.EMAIL_RATE_LIMIT_PER_MINUTE = 0


def _batch_job(campaign):
    return taken_over("email-batch-part", "email-sender", "send_email_batch", campaign_id=campaign.pk)


def test_a_stale_run_claims_no_delivery_and_sends_nothing(smtp):
    # Given a batch whose job attempt 2 holds on worker "new"
    campaign = campaign_for(users(3))
    job = _batch_job(campaign)
    # When its stale attempt 1 (worker "old") runs the batch
    with running_as(job, *STALE), pytest.raises(RunSuperseded):
        send_batch(campaign.pk, delivery_ids(campaign), token=str(current_fence()))
    # Then its first claim was refused: no email, every row still pending and unclaimed
    assert smtp.received == []
    assert set(statuses(campaign).values()) == {DeliveryStatus.PENDING}
    assert set(Delivery.objects.filter(campaign=campaign).values_list("claimed_by", flat=True)) == {""}


def test_a_stale_run_records_the_email_it_sent_but_claims_no_other(smtp):
    # Given a row the stale run claimed (its token) and handed to the server before the take-over
    sent_row, other = users(2)
    campaign = campaign_for([sent_row, other])
    job = _batch_job(campaign)
    stale_token = f"{job.id}:{STALE[0]}"
    Delivery.objects.filter(email=sent_row.email).update(status="sending", claimed_by=stale_token, attempts=1)
    with running_as(job, *STALE):
        fence = current_fence()
        assert str(fence) == stale_token
        writer = OutcomeWriter(stale_token, fence)
        writer.record(Delivery.objects.get(email=sent_row.email).pk, DeliveryStatus.SENT, "250 OK")
        # When it writes that outcome along with its next claim
        with pytest.raises(RunSuperseded):
            writer.claim_after_last(Delivery.objects.get(email=other.email).pk)
        writer.close()
    # Then the outcome landed (fenced by the row's own token: the email did go out) and the claim did not
    assert statuses(campaign) == {sent_row.email: "sent", other.email: "pending"}


def test_take_over_waits_for_a_row_in_doubt_and_never_resends_what_the_earlier_run_records(smtp, settings):
    # Given a batch taken over from attempt 1, which left one row "sending" (maybe handed over)
    settings.EMAIL_IN_DOUBT_GRACE_S = 60
    doubtful, *rest = users(4)
    campaign = campaign_for([doubtful, *rest])
    job = _batch_job(campaign)
    Delivery.objects.filter(email=doubtful.email).update(status="sending", claimed_by=f"{job.id}:1", attempts=1)
    row = Delivery.objects.get(email=doubtful.email).pk
    # And the earlier run, thawed, records it a second later (on its own connection)
    recorded = threading.Thread(target=_record_later, args=(row, f"{job.id}:1", DeliveryStatus.SENT))
    # When the run that took over sends the batch
    with running_as(job, *HOLDER):
        began = time.monotonic()
        recorded.start()
        outcome = send_batch(campaign.pk, delivery_ids(campaign), token=str(current_fence()))
    recorded.join()
    # Then it sent the others, waited for the row in doubt, and did not send it again
    assert sorted(smtp.addresses()) == sorted(user.email for user in rest)
    assert set(statuses(campaign).values()) == {DeliveryStatus.SENT}
    assert outcome.sent == 3
    assert time.monotonic() - began >= 1.0


def test_take_over_sends_a_row_the_earlier_run_gave_back(smtp, settings):
    settings.EMAIL_IN_DOUBT_GRACE_S = 60
    doubtful, other = users(2)
    campaign = campaign_for([doubtful, other])
    job = _batch_job(campaign)
    Delivery.objects.filter(email=doubtful.email).update(status="sending", claimed_by=f"{job.id}:1", attempts=1)
    row = Delivery.objects.get(email=doubtful.email).pk
    # The earlier run wakes and gives the row back: the server never had it
    given_back = threading.Thread(target=_record_later, args=(row, f"{job.id}:1", DeliveryStatus.PENDING))
    with running_as(job, *HOLDER):
        given_back.start()
        send_batch(campaign.pk, delivery_ids(campaign), token=str(current_fence()))
    given_back.join()
    assert sorted(smtp.addresses()) == sorted([doubtful.email, other.email])
    assert set(statuses(campaign).values()) == {DeliveryStatus.SENT}


def test_take_over_sends_a_row_in_doubt_once_the_earlier_worker_is_silent_past_the_grace(smtp, settings):
    # Given a row left "sending" by attempt 1, whose worker no longer heartbeats, and no grace
    settings.EMAIL_IN_DOUBT_GRACE_S = 0
    doubtful, other = users(2)
    campaign = campaign_for([doubtful, other])
    job = _batch_job(campaign)
    Delivery.objects.filter(email=doubtful.email).update(status="sending", claimed_by=f"{job.id}:1", attempts=1)
    # When the run that took over sends the batch
    with running_as(job, *HOLDER):
        outcome = send_batch(campaign.pk, delivery_ids(campaign), token=str(current_fence()))
    # Then it gave the earlier run up and sent that row too (the documented duplicate of a dead worker)
    assert sorted(smtp.addresses()) == sorted([doubtful.email, other.email])
    assert set(statuses(campaign).values()) == {DeliveryStatus.SENT}
    assert outcome.reclaimed == 1


def test_claims_hold_the_runs_fencing_token(smtp):
    campaign = campaign_for(users(1))
    job = _batch_job(campaign)
    with running_as(job, *HOLDER):
        token = str(current_fence())
        writer = OutcomeWriter(token, current_fence())
        assert writer.claim_after_last(delivery_ids(campaign)[0])
        writer.close()
    assert token == f"{job.id}:2" and len(token) <= Delivery._meta.get_field("claimed_by").max_length
    assert list(Delivery.objects.values_list("status", "claimed_by")) == [("sending", token)]


def _record_later(delivery_id: int, token: str, status: str) -> None:
    from django.db import connection

    try:
        time.sleep(1.0)
        Delivery.objects.filter(id=delivery_id, status="sending", claimed_by=token).update(
            status=status, claimed_by=token if status != DeliveryStatus.PENDING else ""
        )
    finally:
        connection.close()
