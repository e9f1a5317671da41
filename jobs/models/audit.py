"""The audit trail: who cancelled, retried, paused, resumed or edited what, and through which door."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from jobs.core.origin import LABEL_MAX, AuditAction, Via


class AuditEvent(models.Model):
    """One operator action; rows are only ever added (the admin lists them read-only)."""

    at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    via = models.CharField(max_length=16, choices=Via.choices)
    #: Kept when the user is deleted: the label still says who it was.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=LABEL_MAX, blank=True, default="")
    #: What was acted on: "job", "queue", "schedule", "email template".
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=64)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [
            models.Index(fields=["-at"], name="audit_at"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
        ]

    def __str__(self) -> str:
        who = self.actor_label or self.via
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.target_type} {self.target_id} by {who}"
