"""``manage.py jobs retry|cancel|reconcile|canaries``: operators' manual controls."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.core.exceptions import JobNotCancellable, JobNotRetryable
from jobs.dispatch.canaries import send_canaries
from jobs.dispatch.services import cancel_job, retry_job
from jobs.models import Job
from jobs.ops.reconciler import reconcile_once


class Command(BaseCommand):
    help = "Retry or cancel jobs by id, run one reconciler pass, or send canaries."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["retry", "cancel", "reconcile", "canaries"])
        parser.add_argument("job_ids", nargs="*")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "reconcile":
            self.stdout.write(str(reconcile_once()))
            return
        if action == "canaries":
            for job in send_canaries():
                self.stdout.write(f"{job.queue}: {job.id}")
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
                job = retry_job(job) if action == "retry" else cancel_job(job)
            except (JobNotRetryable, JobNotCancellable) as exc:
                self.stderr.write(f"{job_id}: {exc}")
                continue
            self.stdout.write(f"{job_id}: {job.status}")
