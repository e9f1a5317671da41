"""Makes Redis hold exactly the messages the Job table says it should.

One pass does these things, each safe to repeat and to run from several
processes at once (a worker skips a message whose Job is not waiting for it):

* sends jobs that were recorded but never sent (Redis was down at enqueue)
  and jobs whose message Redis lost (restart without persistence);
* sends again waiting jobs whose message a live worker fetched but never
  got: the fetch ran in Redis and its reply was lost to a dropped
  connection, so the message sits in the worker's in-flight set, where
  Dramatiq only recovers it once that worker dies;
* sends scheduled jobs that have come due (delays live in the database);
* gives back running jobs whose worker died and whose message is gone;
* delivers again the outcome hooks of finished jobs that domain rows still
  wait on (``jobs.dispatch.outcomes.deliver_unsettled``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import dramatiq
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from jobs.core.enums import RunHolder
from jobs.core.queues import queue_names
from jobs.dispatch.outcomes import deliver_unsettled
from jobs.dispatch.services import send_job
from jobs.models import Job, JobStatus
from jobs.state import transitions

logger = logging.getLogger(__name__)

_BATCH = 1000


@dataclass
class ReconcileReport:
    resent: int = 0
    due_sent: int = 0
    lost_requeued: int = 0
    #: Outcome hooks delivered again to domain rows that still waited for them.
    outcomes_redelivered: int = 0

    def __bool__(self) -> bool:
        return bool(self.resent or self.due_sent or self.lost_requeued or self.outcomes_redelivered)


def _stranded(queue: str, in_flight: set[str], cutoff: datetime) -> set[UUID]:
    """Waiting jobs whose message has sat in a worker's in-flight set since before ``cutoff``.

    A worker claims a message as soon as it fetches it (it fetches only for
    free threads), so a job still waiting long after is not being worked on.
    """
    if not in_flight:
        return set()
    candidates = Job.objects.filter(queue=queue, id__in=list(in_flight)[:_BATCH], updated_at__lt=cutoff).filter(
        Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RETRYING, next_attempt_at__lt=cutoff)
    )
    return set(candidates.values_list("id", flat=True))


def reconcile_once() -> ReconcileReport:
    broker = dramatiq.get_broker()
    report = ReconcileReport()
    now = timezone.now()
    grace = now - timedelta(seconds=settings.JOBS_RECONCILE_GRACE_S)
    horizon = now + timedelta(seconds=settings.JOBS_DELAY_HORIZON_S)
    live_workers = broker.live_worker_ids()  # type: ignore[attr-defined]

    in_flight_by_queue = broker.in_flight_message_ids()  # type: ignore[attr-defined]

    for queue in queue_names():
        snapshot_at = timezone.now()
        in_redis = broker.message_ids_in_redis(queue)  # type: ignore[attr-defined]
        waiting = Job.objects.filter(queue=queue).filter(
            Q(status=JobStatus.QUEUED, updated_at__lt=grace)
            | Q(status=JobStatus.RETRYING, updated_at__lt=grace)
            | Q(status=JobStatus.SCHEDULED, scheduled_for__lte=horizon)
        )
        in_flight = in_flight_by_queue.get(queue, set())
        stranded = _stranded(queue, in_flight, now - timedelta(seconds=settings.JOBS_STRANDED_AFTER_S))
        for job in waiting.order_by("created_at")[:_BATCH]:
            if (str(job.id) in in_redis and job.id not in stranded) or job.updated_at >= snapshot_at:
                continue  # in Redis, or sent after the snapshot was taken
            if send_job(job):
                if job.status == JobStatus.SCHEDULED:
                    report.due_sent += 1
                else:
                    report.resent += 1
                    logger.warning("Job %s (%s) was not in Redis; sent it again", job.id, job.status)

        # A parent waiting for its children has no worker (and no message) by design.
        running = Job.objects.filter(queue=queue, status=JobStatus.ACTIVE, updated_at__lt=grace).exclude(
            worker_id__in=[*live_workers, RunHolder.AWAITING_CHILDREN, RunHolder.FINALIZING]
        )
        for job in running[:_BATCH]:
            if str(job.id) in in_redis:
                continue  # Dramatiq's maintenance will redeliver it
            if transitions.requeue_lost(str(job.id), job.worker_id):
                job.refresh_from_db()
                send_job(job)
                report.lost_requeued += 1
                logger.warning("Job %s lost its worker %s and its message; requeued", job.id, job.worker_id)
    # Hooks are at least once: a worker may have died between a job's final
    # commit and its hook. The grace leaves the worker's own delivery time.
    report.outcomes_redelivered = deliver_unsettled(settings.JOBS_RECONCILE_GRACE_S)
    if report:
        logger.info("Reconciled: %s", report)
    return report
