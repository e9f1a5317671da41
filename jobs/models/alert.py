"""``Alert``: one breach of one rule for one subject (a queue, or the whole system), with its times.

State diagram (model methods only; every write is conditional, so two
evaluators in two scheduler processes never fire or resolve an alert twice)::

    (breach seen) ──► pending ── held for the rule's duration ──► firing ── breach over ──► resolved
                         │
                         └── breach over before that: the row is deleted (nothing happened)

The Slack message for each edge is claimed (``fire_sent_at`` /
``resolve_sent_at`` set) before it is posted and given back if the post
fails, so each is delivered once, retried at later evaluations if Slack is down.
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


_SENT_FIELD: dict[str, str] = {Notice.FIRED: "fire_sent_at", Notice.RESOLVED: "resolve_sent_at"}


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
        cls, rule: str, subject: str, *, value: float, threshold: float, summary: str, for_s: float, now: datetime
    ) -> Alert | None:
        """Record that the rule is breached now; returns the alert if this call made it fire."""
        alert = cls.objects.filter(rule=rule, subject=subject, status__in=OPEN_STATUSES).first()
        if alert is None:
            try:
                with transaction.atomic():
                    alert = cls.objects.create(
                        rule=rule, subject=subject, value=value, threshold=threshold, summary=summary, since=now
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
    def unsent(cls, notice: str, max_failures: int) -> models.QuerySet[Alert]:
        """Alerts whose ``notice`` message is owed (fired before resolved; both once)."""
        query = cls.objects.filter(notify_failures__lt=max_failures)
        if notice == Notice.FIRED:
            return query.filter(status__in=(AlertStatus.FIRING, AlertStatus.RESOLVED), fire_sent_at__isnull=True)
        return query.filter(status=AlertStatus.RESOLVED, fire_sent_at__isnull=False, resolve_sent_at__isnull=True)

    def claim_notice(self, notice: str) -> bool:
        """Take the right to send this message (False: another evaluator has it, or it was sent)."""
        field = _SENT_FIELD[notice]
        now = timezone.now()
        claimed = Alert.objects.filter(pk=self.pk, **{f"{field}__isnull": True}).update(**{field: now})
        if claimed:
            setattr(self, field, now)
        return bool(claimed)

    def release_notice(self, notice: str, error: str) -> None:
        """The post failed: owe the message again at the next evaluation."""
        Alert.objects.filter(pk=self.pk).update(
            **{_SENT_FIELD[notice]: None},
            notify_failures=F("notify_failures") + 1,
            last_notify_error=error[:2000],
            updated_at=timezone.now(),
        )
