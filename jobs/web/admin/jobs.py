"""The Django admin as the queue browser: read-only jobs with retry, cancel and delete actions.

Each action first narrows the selection to the jobs in a state where it is
valid and says how many it skipped. The queue overview (``/admin/queues/``)
is ``jobs/console.py``.
"""

from __future__ import annotations

import json
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, URLPattern, resolve, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from jobs.core.access import may_control_jobs
from jobs.core.exceptions import JobNotCancellable, JobNotRetryable
from jobs.core.origin import Origin, Via
from jobs.core.queues import queue_names
from jobs.dispatch.registry import job_types
from jobs.dispatch.services import cancel_job, delete_finished_jobs, retry_job
from jobs.models import ACTIVE_STATUSES, RETRYABLE_STATUSES, TERMINAL_STATUSES, Job, JobAttempt
from jobs.web.admin.badges import job_status_badge
from jobs.web.admin.rerun import RerunAdminMixin
from jobs.web.admin.search import search_jobs, search_note
from jobs.web.paging import BoundedCountPaginator

#: Children listed on a parent's page; the rest are one click away in the filtered list.
CHILDREN_SHOWN = 20


def _json_block(value: Any) -> str:
    if value in (None, {}, []):
        return "—"
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


def _job_link(job: Job) -> str:
    return format_html(
        '<a href="{}">{} {}</a> {}',
        reverse("admin:jobs_job_change", args=[job.pk]),
        job.type,
        job.pk,
        job_status_badge(job.status),
    )


class JobOwnerFilter(admin.RelatedOnlyFieldListFilter):
    """The users who own jobs, found by a probe of job_owner_created per user, not a DISTINCT over every job."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> Any:
        owners = get_user_model().objects.filter(Exists(Job.objects.filter(owner=OuterRef("pk"))))
        return field.get_choices(
            include_blank=False,
            ordering=self.field_admin_ordering(field, request, model_admin),
            limit_choices_to={"pk__in": owners.values("pk")},
        )


class QueueFilter(admin.SimpleListFilter):
    """Queues from the queue table (no DISTINCT over the Job table)."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in queue_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(queue=self.value()) if self.value() else queryset


class TypeFilter(admin.SimpleListFilter):
    """Job types from the registry (no DISTINCT over the Job table)."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(job_types())]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(type=self.value()) if self.value() else queryset


class JobAttemptInline(admin.TabularInline):  # type: ignore[type-arg]
    model = JobAttempt
    extra = 0
    can_delete = False
    verbose_name_plural = "attempt history"
    fields = ("number", "outcome", "error", "worker_id", "started_at", "finished_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(RerunAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "type", "queue", "status_badge", "progress", "attempts", "owner", "created_at"]
    list_filter = [
        "status",
        QueueFilter,
        TypeFilter,
        ("owner", JobOwnerFilter),
        "priority",
        "created_at",
        "finished_at",
    ]
    ordering = ["-created_at"]
    list_select_related = ["owner"]
    # A count of millions of rows on every page is slow and says little.
    show_full_result_count = False
    # Counts up to 10,000 matches, estimates beyond (jobs/web/paging.py).
    paginator = BoundedCountPaginator
    # Facet counts would be a COUNT per filter choice over millions of jobs.
    show_facets = admin.ShowFacets.NEVER
    inlines = [JobAttemptInline]
    actions = ["retry_jobs", "cancel_jobs", "rerun_jobs", "delete_jobs"]
    fieldsets = [
        (None, {"fields": ["id", "type", "queue", "actor", "owner", "priority", "status_badge"]}),
        ("Progress", {"fields": ["progress_bar", "live_progress", "progress_block", "estimated_duration_s"]}),
        ("Input and output", {"fields": ["arguments_block", "result_block"]}),
        ("Error", {"fields": ["error_message", "traceback_block"]}),
        ("Family", {"fields": ["parent_link", "children_links", "rerun_of_link", "reruns_links"]}),
        (
            "Attempts and times",
            {
                "fields": [
                    "attempts",
                    "max_attempts",
                    "worker_id",
                    "idempotency_key",
                    "cancel_requested_at",
                    "created_at",
                    "scheduled_for",
                    "next_attempt_at",
                    "started_at",
                    "finished_at",
                    "updated_at",
                ]
            },
        ),
    ]
    readonly_fields = [name for _, options in fieldsets for name in cast(list[str], options["fields"])]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # A job still waiting or running is cancelled first, never deleted under its worker.
        if obj is not None and obj.status not in TERMINAL_STATUSES:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by delete_jobs, which skips unfinished jobs
        return actions

    # -- search: an id or its first characters, or error text (jobs/web/admin/search.py) ------
    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        # A "created at" date filter bounds the search instead of the default JOBS_SEARCH_RECENT_DAYS.
        dated = any(key.startswith("created_at__") for key in request.GET)
        return search_jobs(queryset, search_term, bounded=not dated), False

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return ["id"]  # shows the search box; get_search_results does the searching

    @property
    def search_help_text(self) -> str:  # type: ignore[override]
        # The note under the search box says the current bound (a setting).
        return search_note()

    # -- columns and detail blocks ---------------------------------------------
    def action_checkbox(self, obj: Job) -> SafeString:
        # Django's own renders a form widget through the template engine per row: a third of the
        # list's time. The same markup, formatted directly.
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            f"Select this object for an action - {obj}",
        )

    @admin.display(description="status", ordering="status")
    def status_badge(self, job: Job) -> str:
        return job_status_badge(job.status)

    @admin.display(description="progress")
    def progress_bar(self, job: Job) -> str:
        message = job.progress_data.get("message", "") if isinstance(job.progress_data, dict) else ""
        return format_html(
            '<div style="width:240px;background:#e9ecef;border-radius:4px">'
            '<div class="job-progress" style="width:{}%;background:#0d6efd;color:#fff;padding:1px 4px;'
            'border-radius:4px;white-space:nowrap">{} %</div></div> {}',
            job.progress,
            job.progress,
            message,
        )

    @admin.display(description="live progress")
    def live_progress(self, job: Job) -> str:
        url = f"/jobs/{job.pk}/"
        try:
            resolve(url)
        except Resolver404:
            return "—"
        return format_html(
            '<a href="{}" target="_blank">open the live page</a><br>'
            '<iframe src="{}" title="live progress" style="width:100%;max-width:640px;height:300px;border:0"></iframe>',
            url,
            url,
        )

    @admin.display(description="progress data")
    def progress_block(self, job: Job) -> str:
        return _json_block(job.progress_data)

    @admin.display(description="arguments")
    def arguments_block(self, job: Job) -> str:
        return _json_block(job.arguments)

    @admin.display(description="result")
    def result_block(self, job: Job) -> str:
        return _json_block(job.result)

    @admin.display(description="traceback")
    def traceback_block(self, job: Job) -> str:
        return format_html("<pre>{}</pre>", job.traceback) if job.traceback else "—"

    @admin.display(description="parent")
    def parent_link(self, job: Job) -> str:
        return _job_link(job.parent) if job.parent_id and job.parent else "—"

    @admin.display(description="children")
    def children_links(self, job: Job) -> str:
        children = list(job.children.order_by("created_at")[: CHILDREN_SHOWN + 1])
        if not children:
            return "—"
        listed = format_html_join("", "<li>{}</li>", ((_job_link(child),) for child in children[:CHILDREN_SHOWN]))
        all_link = format_html(
            '<a href="{}?parent__id__exact={}">all children</a>', reverse("admin:jobs_job_changelist"), job.pk
        )
        return format_html("<ul>{}</ul>{}", listed, all_link)

    # -- actions -----------------------------------------------------------------
    # Retry and cancel change jobs: they need jobs.change_job. has_change_permission is always False
    # (the page is read-only), so each action checks the permission through one of its own.
    def has_retry_permission(self, request: HttpRequest) -> bool:
        return may_control_jobs(request.user)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return may_control_jobs(request.user)

    @admin.action(description="Retry selected failed or cancelled jobs", permissions=["retry"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        valid = queryset.filter(status__in=RETRYABLE_STATUSES)
        skipped = queryset.count() - valid.count()
        done = 0
        for job in valid:
            try:
                with transaction.atomic():
                    retry_job(job, origin=Origin.of_user(request.user, Via.ADMIN))
                done += 1
            except JobNotRetryable:
                skipped += 1
        self._report(request, f"Retried {done} job(s); skipped {skipped} not failed or cancelled.", done)

    @admin.action(description="Cancel selected waiting or running jobs", permissions=["cancel"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        valid = queryset.filter(status__in=ACTIVE_STATUSES)
        skipped = queryset.count() - valid.count()
        done = 0
        for job in valid:
            try:
                cancel_job(job, origin=Origin.of_user(request.user, Via.ADMIN))
                done += 1
            except JobNotCancellable:
                skipped += 1
        self._report(request, f"Cancelled {done} job(s); skipped {skipped} already finished.", done)

    @admin.action(description="Delete selected finished jobs", permissions=["delete"])
    def delete_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        selected = queryset.count()
        # Finished, and no child still at work (children go with their parent).
        valid = Job.objects.filter(pk__in=queryset.values("pk"), status__in=TERMINAL_STATUSES).exclude(
            children__status__in=ACTIVE_STATUSES
        )
        done = delete_finished_jobs(valid)
        self._report(
            request,
            f"Deleted {done} job(s); skipped {selected - done} still waiting or running (or with children that are).",
            done,
        )

    def _report(self, request: HttpRequest, text: str, done: int) -> None:
        self.message_user(request, text, messages.SUCCESS if done else messages.WARNING)

    # -- run again: the action is rerun_jobs; its button and links are jobs.web.admin.rerun's ----------
    def get_urls(self) -> list[URLPattern]:
        return self.rerun_urls() + super().get_urls()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), **self.rerun_context(request, object_id)}
        return super().change_view(request, object_id, form_url, context)


# Schedules and their fires (recurring jobs).
