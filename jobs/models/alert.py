"""``Alert``: one breach of one rule for one subject (a queue, or the whole system), with its times.

State diagram (model methods only; every write is conditional, so two
evaluators in two scheduler processes never fire or resolve an alert twice)::

    (breach seen) ──► pending ── held for the rule's duration ──► firing ── breach over ──► resolved
                         │
                         └── breach over before that, or not seen at an evaluation for
                             longer than the evaluations' gap allows: deleted, or its
                             ``since`` starts again (a breach must be seen sustained)

Each edge has a message on each channel: Slack for every rule, the pager
for the rules that page. Each is claimed (``fire_sent_at`` /
``resolve_sent_at``, ``page_sent_at`` / ``page_resolve_sent_at`` set)
before it is posted and given back if the post fails, so each is delivered
once, and each channel is retried at later evaluations on its own: Slack
being down holds back no page.
"""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, models, transaction
from django.db.models import F, Q
from django.utils import timezone


class AlertStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


OPEN_STATUSES = (AlertStatus.PENDING, AlertStatus.FIRING)


class Notice(models.TextChoices):
    FIRED = "fired", "Fired"
    RESOLVED = "resolved", "Resolved"


class Channel(models.TextChoices):
    SLACK = "slack", "Slack"
    PAGER = "pager", "Pager"


_SENT_FIELD: dict[tuple[str, str], str] = {
    (Channel.SLACK, Notice.FIRED): "fire_sent_at",
    (Channel.SLACK, Notice.RESOLVED): "resolve_sent_at",
    (Channel.PAGER, Notice.FIRED): "page_sent_at",
    (Channel.PAGER, Notice.RESOLVED): "page_resolve_sent_at",
}
_FAILURES_FIELD: dict[str, str] = {Channel.SLACK: "notify_failures", Channel.PAGER: "page_failures"}


class Alert(models.Model):
    rule = models.CharField(max_length=64)
    subject = models.CharField(max_length=128, blank=True, default="")
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.PENDING)
    summary = models.TextField(blank=True, default="")
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    since = models.DateTimeField(default=timezone.now, help_text="When the breach was first seen.")
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    fire_sent_at = models.DateTimeField(null=True, blank=True)
    resolve_sent_at = models.DateTimeField(null=True, blank=True)
    notify_failures = models.PositiveIntegerField(default=0)
    page_sent_at = models.DateTimeField(null=True, blank=True)
    page_resolve_sent_at = models.DateTimeField(null=True, blank=True)
    page_failures = models.PositiveIntegerField(default=0)
    last_notify_error = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "jobs"
        ordering = ["-since"]
        indexes = [models.Index(fields=["status", "rule"], name="alert_status_rule")]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=Q(status__in=["pending", "firing"]),
                name="alert_one_open_per_rule_subject",
            )
        ]

    def __str__(self) -> str:
        where = f" ({self.subject})" if self.subject else ""
        return f"{self.rule}{where}: {self.status}"

    # -- the evaluator's transitions --------------------------------------
    @classmethod
    def observe_breach(
        cls,
        rule: str,
        subject: str,
        *,
        value: float,
        threshold: float,
        summary: str,
        for_s: float,
        now: datetime,
        max_gap_s: float | None = None,
    ) -> Alert | None:
        """Record that the rule is breached now; returns the alert if this call made it fire.

        A pending alert last seen breached more than ``max_gap_s`` ago (no
        evaluation looked meanwhile: every scheduler was down) starts its
        duration again: nobody saw the breach hold in between.
        """
        alert = cls.objects.filter(rule=rule, subject=subject, status__in=OPEN_STATUSES).first()
        if (
            alert is not None
            and alert.status == AlertStatus.PENDING
            and max_gap_s is not None
            and (now - alert.updated_at).total_seconds() > max_gap_s
        ):
            cls.objects.filter(pk=alert.pk, status=AlertStatus.PENDING).update(since=now)
            alert.since = now
        if alert is None:
            try:
                with transaction.atomic():
                    alert = cls.objects.create(
                        rule=rule,
                        subject=subject,
                        value=value,
                        threshold=threshold,
                        summary=summary,
                        since=now,
                        updated_at=now,
                    )
            except IntegrityError:  # another evaluator opened it a moment ago
                return None
        else:
            cls.objects.filter(pk=alert.pk).update(value=value, summary=summary, updated_at=now)
        if alert.status != AlertStatus.PENDING or (now - alert.since).total_seconds() < for_s:
            return None
        fired = cls.objects.filter(pk=alert.pk, status=AlertStatus.PENDING).update(
            status=AlertStatus.FIRING, fired_at=now, value=value, summary=summary, updated_at=now
        )
        if not fired:
            return None
        alert.refresh_from_db()
        return alert

    @classmethod
    def observe_clear(cls, rule: str, subjects_breached: set[str], now: datetime) -> None:
        """The rule holds for every subject not in ``subjects_breached``: drop or resolve their alerts."""
        open_alerts = cls.objects.filter(rule=rule, status__in=OPEN_STATUSES).exclude(subject__in=subjects_breached)
        open_alerts.filter(status=AlertStatus.PENDING).delete()
        open_alerts.filter(status=AlertStatus.FIRING).update(
            status=AlertStatus.RESOLVED, resolved_at=now, updated_at=now
        )

    # -- notifications, each sent once ------------------------------------
    @classmethod
    def unsent(cls, notice: str, max_failures: int, channel: str = Channel.SLACK) -> models.QuerySet[Alert]:
        """Alerts whose ``notice`` message is owed on ``channel`` (fired before resolved; both once)."""
        fired_field = _SENT_FIELD[(channel, Notice.FIRED)]
        query = cls.objects.filter(**{f"{_FAILURES_FIELD[channel]}__lt": max_failures})
        if notice == Notice.FIRED:
            return query.filter(
                status__in=(AlertStatus.FIRING, AlertStatus.RESOLVED), **{f"{fired_field}__isnull": True}
            )
        resolved_field = _SENT_FIELD[(channel, Notice.RESOLVED)]
        return query.filter(
            status=AlertStatus.RESOLVED, **{f"{fired_field}__isnull": False, f"{resolved_field}__isnull": True}
        )

    def claim_notice(self, notice: str, channel: str = Channel.SLACK) -> bool:
        """Take the right to send this message (False: another evaluator has it, or it was sent)."""
        field = _SENT_FIELD[(channel, notice)]
        now = timezone.now()
        claimed = Alert.objects.filter(pk=self.pk, **{f"{field}__isnull": True}).update(**{field: now})
        if claimed:
            setattr(self, field, now)
        return bool(claimed)

    def release_notice(self, notice: str, error: str, channel: str = Channel.SLACK) -> None:
        """The post failed: owe the message again at the next evaluation."""
        failures = _FAILURES_FIELD[channel]
        Alert.objects.filter(pk=self.pk).update(
            **{_SENT_FIELD[(channel, notice)]: None, failures: F(failures) + 1},
            last_notify_error=f"{channel}: {error}"[:2000],
            updated_at=timezone.now(),
        )
