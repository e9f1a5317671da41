"""Pages for people (the API is in ``jobs.web.api``): a job's live progress."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.clickjacking import xframe_options_sameorigin

from jobs.web.realtime.state import jobs_visible_to, snapshot_of


@xframe_options_sameorigin  # the Job admin page embeds it
@login_required
def job_progress_page(request: HttpRequest, job_id: str) -> HttpResponse:
    """``/jobs/<id>/``: the job's progress bar, kept live over ``/ws/jobs/<id>/``; others' jobs 404."""
    job = get_object_or_404(jobs_visible_to(request.user), id=job_id)
    return render(request, "jobs/job_progress.html", {"job": job, "snapshot": snapshot_of(job)})
