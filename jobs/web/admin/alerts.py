"""The alert history in the admin: read-only, newest first."""

from __future__ import annotations

from django.contrib import admin

from jobs.models.alert import Alert
from jobs.web.admin.read_only import HistoryAdmin


@admin.register(Alert)
class AlertAdmin(HistoryAdmin):
    list_display = ["rule", "subject", "status", "since", "fired_at", "resolved_at", "fire_sent_at", "resolve_sent_at"]
    list_filter = ["status", "rule"]
    search_fields = ["rule", "subject", "summary"]
    date_hierarchy = "since"
