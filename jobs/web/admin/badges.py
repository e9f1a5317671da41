"""Status badges for every admin page: one colour per tone, one way to draw them.

Each app maps its own statuses to a ``Tone`` (a document ``ready`` is
``DONE``, an export ``expired`` is ``STOPPED``); the colours live only here.
"""

from __future__ import annotations

from enum import StrEnum

from django.utils.html import format_html
from django.utils.safestring import SafeString

from jobs.core.enums import JobStatus


class Tone(StrEnum):
    WAITING = "#6c757d"
    SCHEDULED = "#6f42c1"
    WORKING = "#0d6efd"
    WARNING = "#fd7e14"
    DONE = "#198754"
    FAILED = "#dc3545"
    STOPPED = "#495057"


JOB_TONES = {
    JobStatus.QUEUED: Tone.WAITING,
    JobStatus.SCHEDULED: Tone.SCHEDULED,
    JobStatus.ACTIVE: Tone.WORKING,
    JobStatus.RETRYING: Tone.WARNING,
    JobStatus.COMPLETED: Tone.DONE,
    JobStatus.FAILED: Tone.FAILED,
    JobStatus.CANCELLED: Tone.STOPPED,
}


def status_badge(label: str, tone: Tone | None) -> SafeString:
    """A coloured pill with ``label`` (escaped); an unknown status is grey."""
    return format_html(
        '<span class="status-badge" style="background:{};color:#fff;padding:2px 8px;border-radius:8px">{}</span>',
        tone or Tone.WAITING,
        label,
    )


def job_status_badge(status: str) -> SafeString:
    job_status = JobStatus(status)
    return status_badge(job_status.label, JOB_TONES.get(job_status))
