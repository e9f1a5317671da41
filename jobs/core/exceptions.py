"""Exceptions of the jobs platform.

``PermanentJobError`` and its subclasses are never retried: retrying cannot
fix bad input. Domain apps subclass it for their own permanent errors.
"""

from __future__ import annotations


class JobError(Exception):
    """Base class of the platform's errors."""


class PermanentJobError(JobError):
    """An error that retrying cannot fix; the job fails at once."""


class JobCancelled(JobError):
    """The job was cancelled while it ran; raised at its next progress call."""


class JobTimedOut(JobError):
    """The job ran past its queue's time limit and was stopped."""


class Reschedule(JobError):  # noqa: N818 - an instruction, not an error
    """Run this job again later without using up an attempt (a rate limit said "not now").

    Raised from an actor: the job goes back to ``scheduled`` for ``delay_s``
    seconds with its attempt count unchanged; no worker thread waits.
    """

    def __init__(self, delay_s: float, reason: str = "rescheduled") -> None:
        super().__init__(reason)
        self.delay_s = max(0.0, float(delay_s))
        self.reason = reason


class UnknownJobType(JobError):
    """A job type that no app registered."""


class JobNotRetryable(JobError):
    """Retry asked for a job that is not failed or cancelled."""


class JobNotCancellable(JobError):
    """Cancel asked for a job that has already finished."""


class TransientJobError(JobError):
    """A temporary failure: retried with backoff like any unexpected error."""
