"""The daily digest: active users with something to report get one email; others none."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from campaigns.digest import prepare_daily_digest
from campaigns.models import Delivery
from jobs.models import Job, JobStatus


def _job(owner, status=JobStatus.COMPLETED, **fields):
    return Job.objects.create(type="canary", queue="maintenance", actor="x", owner=owner, status=status, **fields)


def test_digest_goes_only_to_active_users_with_activity(db):
    from tests.factories import UserFactory

    now = timezone.now()
    busy = UserFactory(last_login=now - timedelta(days=2))
    quiet = UserFactory(last_login=now - timedelta(days=2))
    gone = UserFactory(last_login=now - timedelta(days=90))
    _job(busy)
    _job(busy, status=JobStatus.FAILED)
    _job(gone, created_at=now - timedelta(days=60))
    # When the day's digest is prepared
    campaign = prepare_daily_digest()
    # Then only the busy user has a delivery, with their summary
    [delivery] = Delivery.objects.filter(campaign=campaign)
    assert delivery.user == busy
    assert delivery.context["digest"]["jobs"] == {"completed": 1, "failed": 1}
    assert quiet.pk != delivery.user_id


def test_digest_of_a_day_is_prepared_once(db):
    from tests.factories import UserFactory

    user = UserFactory(last_login=timezone.now())
    _job(user)
    first = prepare_daily_digest()
    _job(user)
    second = prepare_daily_digest()
    assert first.pk == second.pk
    assert Delivery.objects.filter(campaign=first).count() == 1


def test_digest_email_renders_the_users_summary(db, smtp, settings, clean_redis):
    from campaigns.sending import send_batch
    from tests.factories import UserFactory

    settings.EMAIL_RATE_LIMIT_PER_MINUTE = 0
    user = UserFactory(last_login=timezone.now())
    _job(user)
    campaign = prepare_daily_digest()
    send_batch(campaign.pk, [d.pk for d in campaign.deliveries.all()], token="t")
    [received] = smtp.received
    assert received.subject == "Your day on Conveyor: 1 job(s)"
    assert "- jobs: 1 completed" in received.body
