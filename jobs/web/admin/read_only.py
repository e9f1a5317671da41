"""A history in the admin: rows are listed and opened, never added, edited or deleted by hand."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest


class HistoryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Rows come only from what they record (alerts, audit events); every field is read-only."""

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
