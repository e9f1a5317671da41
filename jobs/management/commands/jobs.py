"""``manage.py jobs retry|cancel|pause|resume|reconcile|canaries``: operators' manual controls.

Retry, cancel, pause and resume are written to the audit trail as done by this
command and the OS account running it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.core.exceptions import JobNotCancellable, JobNotRetryable
from jobs.core.origin import AuditAction, Origin
from jobs.core.queues import UnknownQueue, get_queue
from jobs.dispatch.canaries import send_canaries
from jobs.dispatch.services import cancel_job, retry_job
from jobs.models import Job
from jobs.ops.reconciler import reconcile_once
from jobs.state.audit import record_audit
from jobs.worker.pausing import pause_queue, resume_queue


class Command(BaseCommand):
    help = "Retry or cancel jobs by id, pause or resume queues by name, run one reconciler pass, or send canaries."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["retry", "cancel", "pause", "resume", "reconcile", "canaries"])
        parser.add_argument("job_ids", nargs="*", help="job ids (retry, cancel) or queue names (pause, resume)")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "reconcile":
            self.stdout.write(str(reconcile_once()))
            return
        if action == "canaries":
            for job in send_canaries(origin=Origin.command()):
                self.stdout.write(f"{job.queue}: {job.id}")
            return
        if action in ("pause", "resume"):
            self._pause_or_resume(action, options["job_ids"])
            return
        if not options["job_ids"]:
            raise CommandError(f"{action} needs at least one job id")
        for job_id in options["job_ids"]:
            try:
                job = Job.objects.get(id=job_id)
            except (Job.DoesNotExist, ValueError):
                self.stderr.write(f"{job_id}: no such job")
                continue
            try:
                origin = Origin.command()
                job = retry_job(job, origin=origin) if action == "retry" else cancel_job(job, origin=origin)
            except (JobNotRetryable, JobNotCancellable) as exc:
                self.stderr.write(f"{job_id}: {exc}")
                continue
            self.stdout.write(f"{job_id}: {job.status}")

    def _pause_or_resume(self, action: str, queues: list[str]) -> None:
        if not queues:
            raise CommandError(f"{action} needs at least one queue name")
        for name in queues:
            try:
                get_queue(name)
            except UnknownQueue:
                raise CommandError(f"no queue named {name!r}") from None
        for name in queues:
            (pause_queue if action == "pause" else resume_queue)(name)
            record_audit(
                AuditAction.PAUSE if action == "pause" else AuditAction.RESUME, Origin.command(), "queue", name
            )
            self.stdout.write(f"{name}: {'paused' if action == 'pause' else 'resumed'}")
