"""Exceptions of the jobs platform, and the reason a failed job shows its owner.

``PermanentJobError`` and its subclasses are never retried: retrying cannot
fix bad input. Domain apps subclass it for their own permanent errors.

The text of a ``JobError`` (and of every domain error, which subclasses one)
is written for people: it becomes the job's ``error``, which its owner reads
in the API, the live events and the attempt history, and which outcome hooks
copy to the domain's rows. Any other exception (a database driver's error, a
``KeyError``, an ``OSError`` from a library) may carry internals: a query, a
path, a connection string. Its owner sees only ``UNEXPECTED_ERROR``; the
type, text and traceback are kept in ``Job.traceback``, for staff in the admin
(:func:`readable_reason`).
"""

from __future__ import annotations

from jobs.core.redaction import redact_text

#: What the owner of a job sees for an exception whose text was not written for people.
UNEXPECTED_ERROR = "unexpected error; the details are kept for staff"

# Set on an exception the worker answered with a retry (see ``will_be_retried``).
_RETRIED = "conveyor_will_retry"


class JobError(Exception):
    """Base class of the platform's errors; its text is shown to the job's owner."""


class PermanentJobError(JobError):
    """An error that retrying cannot fix; the job fails at once."""


class JobCancelled(JobError):
    """The job was cancelled while it ran; raised at its next progress call."""


class JobTimedOut(JobError):
    """The job ran past its queue's time limit and was stopped."""


class RunSuperseded(JobError):
    """This run lost its claim: another worker took the job over (fencing refused a write).

    Raised in the stale run at its next progress call, fenced write or by the
    watchdog; the worker then writes nothing more for the job.
    """


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


class JobNotRerunnable(JobError):
    """Run again asked for a job that is unfinished, internal, or whose domain rows cannot run again."""


class TransientJobError(JobError):
    """A temporary failure: retried with backoff like any unexpected error."""


def readable_reason(exc: BaseException) -> str:
    """The reason shown to a job's owner for ``exc``: a ``JobError``'s own text, or ``UNEXPECTED_ERROR``.

    A ``JobError`` keeps today's ``"<Type>: <text>"`` (domain error names such
    as ``CorruptPdf`` say what went wrong); secrets that slipped into its text
    (a URL's password) are filtered all the same. Nothing else shows its text
    or its type: the admin's traceback has both.
    """
    if not isinstance(exc, JobError):
        return UNEXPECTED_ERROR
    text = redact_text(str(exc).strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def note_retry(exc: BaseException) -> None:
    """Mark ``exc`` as answered by a retry (the worker decided so), for the error reports to skip it."""
    try:
        setattr(exc, _RETRIED, True)
    except AttributeError:  # an exception type that takes no attributes: reported, which is safe
        pass


def will_be_retried(exc: BaseException) -> bool:
    """Whether the worker answered ``exc`` with another attempt (:func:`note_retry`)."""
    return bool(getattr(exc, _RETRIED, False))
