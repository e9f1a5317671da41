"""Pages for people (the API is in ``jobs.web.api``): a job's live page.

``/jobs/<id>/`` renders the job; its script follows ``/ws/jobs/<id>/`` for the
bar and the status, and reads ``/jobs/<id>/state`` for what events do not
carry: the ETA (``Job.estimated_completion``), whether it may still be
cancelled, and the links to its result, which the job's type provides
(``JobType.result_links``: ``jobs`` never imports the domain app that knows
where a document's text or an export's file is).
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

from jobs.core.access import may_control_jobs
from jobs.core.enums import STATUS_LABELS, JobStatus
from jobs.dispatch.estimates import humanize_duration
from jobs.dispatch.outcomes import JobOutcome
from jobs.dispatch.registry import job_types
from jobs.models import Job
from jobs.web.realtime.state import jobs_visible_to, snapshot_of

logger = logging.getLogger(__name__)


def result_links(job: Job) -> list[dict[str, str]]:
    """What the job's type links to for this job (nothing until it provides some); a broken hook shows nothing."""
    job_type = job_types().get(job.type)
    if job_type is None or job_type.result_links is None:
        return []
    try:
        return [{"label": link.label, "url": link.url} for link in job_type.result_links(JobOutcome.of_job(job))]
    except Exception:
        logger.exception("The result links of job %s (%s) failed", job.id, job.type)
        return []


def eta_text(job: Job) -> str:
    """When the job should be done, in words: from ``Job.estimated_completion`` while it runs."""
    if job.status == JobStatus.ACTIVE:
        finish = job.estimated_completion
        if finish is None:
            return "Estimating the time left…"
        left = (finish - timezone.now()).total_seconds()
        if left <= 0:
            return "Should finish any moment now"
        return f"About {humanize_duration(left)} left (around {timezone.localtime(finish):%H:%M:%S})"
    if job.status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RETRYING) and job.estimated_duration_s:
        return f"Takes about {humanize_duration(job.estimated_duration_s)} once a worker starts it"
    return ""


def page_state(job: Job, user: Any) -> dict[str, Any]:
    """What the page shows beside the bar: readable status, ETA, cancel, result links."""
    return {
        "status": job.status,
        "status_label": STATUS_LABELS.get(job.status, job.status),
        "finished": job.is_terminal,
        "estimated_completion": job.estimated_completion.isoformat() if job.estimated_completion else None,
        "eta": eta_text(job),
        "may_cancel": not job.is_terminal and (job.owner_id == user.pk or may_control_jobs(user)),
        "result_links": result_links(job) if job.status == JobStatus.COMPLETED else [],
    }


@xframe_options_sameorigin  # the Job admin page embeds it
@login_required
def job_progress_page(request: HttpRequest, job_id: str) -> HttpResponse:
    """``/jobs/<id>/``: the job's progress bar, kept live over ``/ws/jobs/<id>/``; others' jobs 404."""
    job = get_object_or_404(jobs_visible_to(request.user), id=job_id)
    context = {
        "job": job,
        "snapshot": snapshot_of(job),
        "state": page_state(job, request.user),
        "labels": STATUS_LABELS,
        "urls": {
            "state": reverse("job-page-state", args=[job.id]),
            "cancel": reverse("job-cancel", args=[job.id]),
        },
    }
    return render(request, "jobs/job_progress.html", context)


@require_GET
@login_required
def job_page_state(request: HttpRequest, job_id: str) -> JsonResponse:
    """``/jobs/<id>/state``: the page's ETA, cancel and result links, read again as events arrive."""
    job = get_object_or_404(jobs_visible_to(request.user), id=job_id)
    return JsonResponse(page_state(job, request.user))
