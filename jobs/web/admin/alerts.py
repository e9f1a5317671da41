"""The alert history in the admin: read-only, newest first."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from jobs.models.alert import Alert


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["rule", "subject", "status", "since", "fired_at", "resolved_at", "fire_sent_at", "resolve_sent_at"]
    list_filter = ["status", "rule"]
    search_fields = ["rule", "subject", "summary"]
    date_hierarchy = "since"

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [field.name for field in Alert._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
