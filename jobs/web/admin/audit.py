"""The audit trail in the admin: every cancel, retry, pause, resume and template edit, read-only."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from jobs.models.audit import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["at", "action", "via", "actor_label", "target_type", "target_id"]
    list_filter = ["action", "via", "target_type", "at"]
    search_fields = ["actor_label", "target_id"]
    date_hierarchy = "at"
    readonly_fields = ["at", "action", "via", "actor", "actor_label", "target_type", "target_id", "detail"]

    # Nobody writes history by hand: rows come only from the actions they record.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
