""" "Run again" in the job admin: the action on the list and the button on a finished job's page.

Both call ``jobs.dispatch.rerun.rerun_job`` (its docstring has the rules), need
``jobs.change_job`` like retry and cancel, and answer with admin messages. A
re-run and its original link to each other on their pages.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from jobs.core.access import may_control_jobs
from jobs.core.exceptions import JobNotRerunnable
from jobs.core.origin import Origin, Via
from jobs.dispatch.rerun import rerun_job, rerunnable_type
from jobs.models import TERMINAL_STATUSES, Job
from jobs.web.admin.badges import job_status_badge

#: Re-runs listed on an original's page, newest first.
RERUNS_SHOWN = 10


def _change_url(job: Job | Any) -> str:
    return reverse("admin:jobs_job_change", args=[job.pk])


def _linked(job: Job) -> str:
    return format_html('<a href="{}">{}</a> {}', _change_url(job), job.pk, job_status_badge(job.status))


class RerunAdminMixin:
    """Mixed into ``JobAdmin`` (``jobs.web.admin.jobs``): the action, its URL, its button and the links."""

    admin_site: admin.AdminSite

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        return may_control_jobs(request.user)

    @admin.action(description="Run selected finished jobs again (as new linked jobs)", permissions=["rerun"])
    def rerun_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        selected = queryset.count()
        started: list[Job] = []
        refusals: list[str] = []
        origin = Origin.of_user(request.user, Via.ADMIN)
        for job in queryset.filter(status__in=TERMINAL_STATUSES):
            try:
                started.append(rerun_job(job, origin))
            except JobNotRerunnable as exc:
                refusals.append(str(exc))
        unfinished = selected - len(started) - len(refusals)
        if started:
            links = format_html_join(", ", '<a href="{}">{}</a>', ((_change_url(job), job.pk) for job in started))
            messages.success(request, format_html("Started {} new job(s): {}.", len(started), links))
        if unfinished:
            messages.warning(
                request, f"Skipped {unfinished} job(s) still waiting or running: only finished jobs run again."
            )
        for refusal in refusals:
            messages.warning(request, f"Not run again: {refusal}.")

    def rerun_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST from the button on a job's page: start the re-run and show its page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_rerun_permission(request):
            raise PermissionDenied
        job = get_object_or_404(Job, pk=object_id)
        try:
            new = rerun_job(job, Origin.of_user(request.user, Via.ADMIN))
        except JobNotRerunnable as exc:
            messages.error(request, f"Not run again: {exc}.")
            return redirect(_change_url(job))
        messages.success(
            request, format_html('Started job {}, a re-run of <a href="{}">{}</a>.', new.pk, _change_url(job), job.pk)
        )
        return redirect(_change_url(new))

    def rerun_urls(self) -> list[URLPattern]:
        return [path("<uuid:object_id>/rerun/", self.admin_site.admin_view(self.rerun_view), name="jobs_job_rerun")]

    def rerun_context(self, request: HttpRequest, object_id: str | None) -> dict[str, Any]:
        """For the change form's button (templates/admin/jobs/job/change_form.html)."""
        if object_id is None or not self.has_rerun_permission(request):
            return {}
        try:
            job_id = uuid.UUID(str(object_id))
        except ValueError:
            return {}  # the admin answers an id that is not one itself
        job = Job.objects.filter(pk=job_id).only("type", "status", "parent_id").first()
        if job is None or job.status not in TERMINAL_STATUSES:
            return {}
        try:
            rerunnable_type(job, request.user)
        except JobNotRerunnable:
            return {}
        return {"rerun_url": reverse("admin:jobs_job_rerun", args=[job.pk])}

    @admin.display(description="re-run of")
    def rerun_of_link(self, job: Job) -> str:
        return _linked(job.rerun_of) if job.rerun_of_id and job.rerun_of else "—"

    @admin.display(description="re-runs")
    def reruns_links(self, job: Job) -> str:
        reruns = list(job.reruns.order_by("-created_at")[:RERUNS_SHOWN])
        if not reruns:
            return "—"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((_linked(rerun),) for rerun in reruns)))
