"""The Django admin as the queue browser: read-only jobs with retry and cancel actions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from jobs.exceptions import JobNotCancellable, JobNotRetryable
from jobs.models import ACTIVE_STATUSES, RETRYABLE_STATUSES, Job, JobAttempt, JobStatus
from jobs.services import cancel_job, retry_job

STATUS_COLOURS = {
    JobStatus.QUEUED: "#6c757d",
    JobStatus.SCHEDULED: "#6f42c1",
    JobStatus.ACTIVE: "#0d6efd",
    JobStatus.RETRYING: "#fd7e14",
    JobStatus.COMPLETED: "#198754",
    JobStatus.FAILED: "#dc3545",
    JobStatus.CANCELLED: "#495057",
}


class JobAttemptInline(admin.TabularInline):  # type: ignore[type-arg]
    model = JobAttempt
    extra = 0
    can_delete = False
    fields = ("number", "outcome", "error", "worker_id", "started_at", "finished_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "type", "queue", "status_badge", "progress", "attempts", "owner", "created_at"]
    list_filter = ["status", "queue", "type", "priority", "created_at"]
    search_fields = ["id", "type", "error_message"]
    ordering = ["-created_at"]
    list_select_related = ["owner"]
    inlines = [JobAttemptInline]
    actions = ["retry_jobs", "cancel_jobs"]
    readonly_fields = [
        "id",
        "type",
        "queue",
        "actor",
        "owner",
        "priority",
        "status",
        "progress",
        "progress_data",
        "arguments",
        "result",
        "error_message",
        "traceback_block",
        "attempts",
        "max_attempts",
        "parent",
        "worker_id",
        "estimated_duration_s",
        "idempotency_key",
        "cancel_requested_at",
        "created_at",
        "scheduled_for",
        "next_attempt_at",
        "started_at",
        "finished_at",
        "updated_at",
    ]
    exclude = ["traceback"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, job: Job) -> str:
        colour = STATUS_COLOURS.get(JobStatus(job.status), "#6c757d")
        return format_html(
            '<span style="background:{};color:#fff;padding:2px 8px;border-radius:8px">{}</span>',
            colour,
            job.get_status_display(),
        )

    @admin.display(description="traceback")
    def traceback_block(self, job: Job) -> str:
        return format_html("<pre>{}</pre>", job.traceback) if job.traceback else "—"

    @admin.action(description="Retry selected failed or cancelled jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        valid = queryset.filter(status__in=RETRYABLE_STATUSES)
        skipped = queryset.count() - valid.count()
        done = 0
        for job in valid:
            try:
                with transaction.atomic():
                    retry_job(job)
                done += 1
            except JobNotRetryable:
                skipped += 1
        self.message_user(
            request,
            f"Retried {done} job(s); skipped {skipped} not failed or cancelled.",
            messages.SUCCESS if done else messages.WARNING,
        )

    @admin.action(description="Cancel selected waiting or running jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        valid = queryset.filter(status__in=ACTIVE_STATUSES)
        skipped = queryset.count() - valid.count()
        done = 0
        for job in valid:
            try:
                cancel_job(job)
                done += 1
            except JobNotCancellable:
                skipped += 1
        self.message_user(
            request,
            f"Cancelled {done} job(s); skipped {skipped} already finished.",
            messages.SUCCESS if done else messages.WARNING,
        )


# Schedules and their fires (recurring jobs).
from jobs.scheduling import admin as _scheduling_admin  # noqa: E402,F401
