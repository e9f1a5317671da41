"""Paused queues as the database records them: what Redis's paused set is restored from."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class QueuePause(models.Model):
    """Whether a queue is paused; one row per queue ever paused or resumed.

    Workers read the paused set in Redis (``jobs.worker.pausing``), which an
    empty restart of Redis loses; this row does not, and the reconciler puts
    the set back from it. A pause or resume writes the row and the set while
    holding the row's lock, and so does the restore, so neither undoes the other.
    """

    queue = models.CharField(max_length=64, primary_key=True)
    paused = models.BooleanField(default=False)
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.queue} {'paused' if self.paused else 'running'}"
