"""Run a finished job again: a new job for the same work, linked to the original (``Job.rerun_of``).

The rules, the same for every door (the admin's action and button today):

* **Which jobs.** Finished ones (completed, failed, cancelled) of a type a
  request can start. A fan-out child (or any internal type) is run again
  through its parent, which knows what its children should do.
* **Whose job.** The original owner's: it is their work, counted in their
  fair share, shown on their job page. Who asked is on the new row
  (``created_via``/``created_by``) and in an ``AuditEvent`` (``rerun``,
  naming the new job) on the original.
* **Who may.** Whoever may control jobs (``jobs.change_job``), and for a
  staff-only type a staff member who also holds the type's own permission
  (``email-batch``: ``campaigns.add_campaign``): the same as starting one.
* **What it does.** The type's ``rerun`` plan when it has one (an export
  makes a new Export: a finished one cannot be written twice and its file
  stays downloadable); otherwise the same arguments, for types whose run
  skips what is already done (an email batch sends only the deliveries still
  pending, never one already sent). Priority is the original's; it is due
  now; the backlog limits do not apply (an operator's action, like staff's
  requests).
* **Idempotency key.** None. The original keeps its key, which is unique per
  owner (a copy would collide), and a client replaying its request still
  gets the original, which is what it asked for.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from jobs.core.access import sees_everything
from jobs.core.enums import TERMINAL_STATUSES
from jobs.core.exceptions import JobNotRerunnable, UnknownJobType
from jobs.core.origin import AuditAction, Origin
from jobs.dispatch.estimates import estimate_duration_s
from jobs.dispatch.outcomes import JobOutcome
from jobs.dispatch.registry import JobPlan, JobType, get_job_type
from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job
from jobs.state.audit import record_audit


def rerunnable_type(job: Job, user: Any = None) -> JobType:
    """The job's type if ``user`` (None: a command or the system) may run this job again, else JobNotRerunnable."""
    if job.parent_id is not None:
        raise JobNotRerunnable(f"job {job.pk} is part of job {job.parent_id}: run that one again")
    try:
        job_type = get_job_type(job.type, startable=True)
    except UnknownJobType:
        raise JobNotRerunnable(f"{job.type} jobs are started by the platform only and do not run again") from None
    if user is not None:
        if job_type.staff_only and not sees_everything(user):
            raise JobNotRerunnable(f"{job.type} jobs are for staff only")
        if job_type.permission and not user.has_perm(job_type.permission):
            raise JobNotRerunnable(f"{job.type} jobs need the {job_type.permission} permission")
    return job_type


def rerun_job(original: Job, origin: Origin) -> Job:
    """Record the new job (sent after the surrounding transaction commits) and audit it on the original."""
    job_type = rerunnable_type(original, origin.user)
    with transaction.atomic():
        locked = Job.objects.select_related("owner").select_for_update(of=("self",)).get(pk=original.pk)
        if locked.status not in TERMINAL_STATUSES:
            raise JobNotRerunnable(f"job {locked.pk} is {locked.status}: only a finished job runs again")
        if job_type.rerun is not None:
            plan = job_type.rerun(JobOutcome.of_job(locked))
        else:
            plan = JobPlan(arguments=dict(locked.arguments))
        job = build_job(
            job_type=job_type.name,
            queue=plan.queue or locked.queue,
            actor=plan.actor or locked.actor,
            arguments=plan.arguments,
            owner=locked.owner,
            priority=locked.priority,
            estimated_duration_s=(
                plan.estimated_duration_s or locked.estimated_duration_s or estimate_duration_s(job_type.name)
            ),
            origin=origin,
        )
        job.rerun_of = locked
        if plan.initial_data:
            job.progress_data = dict(plan.initial_data)
        create_jobs([job])
        if plan.on_created is not None:
            plan.on_created(job)
        record_audit(AuditAction.RERUN, origin, "job", locked.pk, {"type": locked.type, "new_job": str(job.pk)})
    return job
