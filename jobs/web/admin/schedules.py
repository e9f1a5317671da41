"""Schedules in the admin: see, edit, pause, resume and "run now"; fires read-only."""

from __future__ import annotations

import copy
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from jobs.core.origin import AuditAction, Origin, Via
from jobs.models.schedule import Schedule, ScheduleFire
from jobs.ops.scheduling.firing import run_now, validate_schedule
from jobs.ops.scheduling.triggers import next_fire_time
from jobs.state.audit import record_audit
from jobs.web.admin.badges import job_status_badge


def _audit(request: HttpRequest, action: AuditAction, schedules: QuerySet[Schedule]) -> None:
    origin = Origin.of_user(request.user, Via.ADMIN)
    for pk, name in schedules.values_list("pk", "name"):
        record_audit(action, origin, "schedule", pk, {"name": name})


class ScheduleForm(forms.ModelForm):  # type: ignore[type-arg]
    """Checks the timing and the payload against the job type, as every schedule is checked."""

    class Meta:
        model = Schedule
        fields = ["name", "description", "cron", "interval_seconds", "job_type", "payload", "paused", "grace_seconds"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        candidate = copy.copy(self.instance)
        for name, value in cleaned.items():
            setattr(candidate, name, value)
        try:
            validate_schedule(candidate)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from exc
        return cleaned


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = ScheduleForm
    list_display = ["name", "timing", "job_type", "paused", "last_run", "last_job_status", "next_run"]
    list_filter = ["paused", "job_type"]
    search_fields = ["name", "job_type", "description"]
    ordering = ["name"]
    actions = ["pause_schedules", "resume_schedules", "run_schedules_now"]
    fields = [
        "name",
        "description",
        "cron",
        "interval_seconds",
        "job_type",
        "payload",
        "paused",
        "grace_seconds",
        "last_run",
        "last_job_status",
        "next_run",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["last_run", "last_job_status", "next_run", "created_at", "updated_at"]

    def _last_fire(self, schedule: Schedule) -> ScheduleFire | None:
        cache: dict[int, ScheduleFire | None] = getattr(self, "_fire_cache", {})
        if schedule.pk not in cache:
            cache[schedule.pk] = schedule.fires.select_related("job").order_by("-fire_time").first()
            self._fire_cache = cache
        return cache[schedule.pk]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        self._fire_cache = {}
        return super().changelist_view(request, extra_context)

    @admin.display(description="timing (UTC)")
    def timing(self, schedule: Schedule) -> str:
        return schedule.timing

    @admin.display(description="last run")
    def last_run(self, schedule: Schedule) -> str:
        fire = self._last_fire(schedule)
        if fire is None:
            return "—"
        return f"{timezone.localtime(fire.fire_time):%Y-%m-%d %H:%M:%S} ({fire.get_outcome_display()})"

    @admin.display(description="last job")
    def last_job_status(self, schedule: Schedule) -> str:
        last = schedule.fires.filter(job__isnull=False).select_related("job").order_by("-fire_time").first()
        if last is None or last.job is None:
            return "—"
        return job_status_badge(last.job.status)

    @admin.display(description="next run")
    def next_run(self, schedule: Schedule) -> str:
        if schedule.pk is None:
            return "—"
        when = next_fire_time(schedule)
        return f"{when:%Y-%m-%d %H:%M:%S}" if when else "paused"

    @admin.action(description="Pause selected schedules")
    def pause_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        _audit(request, AuditAction.PAUSE, queryset.filter(paused=False))
        done = queryset.filter(paused=False).update(paused=True, updated_at=timezone.now())
        self.message_user(request, f"Paused {done} schedule(s).", messages.SUCCESS)

    @admin.action(description="Resume selected paused schedules")
    def resume_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        _audit(request, AuditAction.RESUME, queryset.filter(paused=True))
        done = queryset.filter(paused=True).update(paused=False, updated_at=timezone.now())
        self.message_user(request, f"Resumed {done} schedule(s).", messages.SUCCESS)

    @admin.action(description="Run selected schedules now")
    def run_schedules_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        outcomes = []
        for schedule in queryset:
            fire = run_now(schedule)
            outcomes.append(f"{schedule.name}: {fire.get_outcome_display() if fire else 'already fired'}")
        self.message_user(request, "; ".join(outcomes) or "Nothing selected.", messages.SUCCESS)


@admin.register(ScheduleFire)
class ScheduleFireAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["schedule", "fire_time", "outcome", "job_link", "job_status", "fired_by", "created_at"]
    list_filter = ["outcome", "schedule", "fire_time"]
    search_fields = ["schedule__name", "job__id", "fired_by"]
    ordering = ["-fire_time"]
    list_select_related = ["schedule", "job"]
    readonly_fields = ["schedule", "fire_time", "job", "outcome", "error", "fired_by", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="job")
    def job_link(self, fire: ScheduleFire) -> str:
        if fire.job_id is None:
            return "—"
        return format_html('<a href="../job/{}/change/">{}</a>', fire.job_id, fire.job_id)

    @admin.display(description="job status")
    def job_status(self, fire: ScheduleFire) -> str:
        return job_status_badge(fire.job.status) if fire.job is not None else "—"
