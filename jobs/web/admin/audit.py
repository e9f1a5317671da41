"""The audit trail in the admin: every cancel, retry, pause, resume and template edit, read-only."""

from __future__ import annotations

from django.contrib import admin

from jobs.models.audit import AuditEvent
from jobs.web.admin.read_only import HistoryAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(HistoryAdmin):
    list_display = ["at", "action", "via", "actor_label", "target_type", "target_id"]
    list_filter = ["action", "via", "target_type", "at"]
    search_fields = ["actor_label", "target_id"]
    date_hierarchy = "at"
