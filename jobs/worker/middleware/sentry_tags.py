"""Sentry for web and workers: set up from settings when ``SENTRY_DSN`` is set, events tagged with the job.

``init_sentry`` runs while the settings load, so it comes before django_dramatiq
builds the broker: Sentry's Dramatiq integration patches ``Broker.__init__`` to
put its own middleware first, which opens a Sentry scope per message and
reports the actor's exception. ``SentryJobTags`` (listed in the broker's middleware
when ``SENTRY_DSN`` is set) writes the job's id and type on that scope, so every event from
a job carries them.

What reaches Sentry, and what does not:

* **No personal data, no local variables** (``send_default_pii=False``,
  ``include_local_variables=False``): a frame's locals hold rows, files'
  text and connection settings (an export spec's repr holds the database
  password).
* **No secrets**: Sentry's ``EventScrubber`` filters the values of
  ``SENTRY_DENYLIST`` keys in the request, extras, breadcrumbs and spans;
  ``before_send`` then walks the whole event (the Dramatiq message in
  ``contexts`` too) and filters secret keys anywhere and URL credentials
  (``scheme://user:password@``) and ``password=...`` pairs in every string
  (``jobs.core.redaction``).
* **No expected outcomes** (:data:`EXPECTED_OUTCOMES`, plus a
  ``TransientJobError`` the worker answered with a retry): a cancel, a
  reschedule or rate-limit deferral, a shutdown, a retry are the platform
  working. A failure for good (a permanent error, the last attempt, a time
  limit) is reported.

An actor's exception reaches Sentry twice: Dramatiq's worker logs it
("Failed to process message ... with unhandled exception", an ERROR record
that the logging integration would turn into an event) *before* any
middleware has decided the outcome, then the Dramatiq integration's
middleware captures it *after* every other middleware (it is first in the
list, so its after-hook runs last), by which time ``JobMirror`` has marked a
retry (``jobs.core.exceptions.note_retry``). The log record's event is
dropped here so the middleware's, which knows the outcome, is the one sent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import dramatiq
import sentry_sdk
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from dramatiq.middleware.shutdown import Shutdown
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

from jobs.core.exceptions import JobCancelled, Reschedule, TransientJobError, will_be_retried
from jobs.core.messages import JOB_TYPE
from jobs.core.redaction import SECRET_KEYS, redact_data

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

logger = logging.getLogger(__name__)

#: Keys whose values Sentry's own scrubber filters (its default list and ours).
SENTRY_DENYLIST = sorted({*DEFAULT_DENYLIST, *SECRET_KEYS})

#: Outcomes the platform handles by design; never reported as errors. ``Reschedule``
#: covers a rate limiter's "not now" (campaigns' ``SendingDeferred`` is one).
EXPECTED_OUTCOMES: tuple[type[BaseException], ...] = (JobCancelled, Reschedule, Shutdown)

# The worker thread's log record for an actor's exception (see the module docstring).
_WORKER_LOGGER = "dramatiq.worker.WorkerThread"
_UNHANDLED = "Failed to process message"


def init_sentry(dsn: str, environment: str) -> None:
    """Report errors of this process (web or worker) to Sentry: no tracing, personal data, locals or secrets."""
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.dramatiq import DramatiqIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), DramatiqIntegration()],
        traces_sample_rate=0.0,
        send_default_pii=False,
        include_local_variables=False,
        event_scrubber=EventScrubber(denylist=list(SENTRY_DENYLIST), recursive=True),
        before_send=before_send,
    )


def is_expected_outcome(exc: BaseException) -> bool:
    """A cancel, a reschedule (or rate-limit deferral), a shutdown, or a ``TransientJobError`` being retried."""
    return isinstance(exc, EXPECTED_OUTCOMES) or (isinstance(exc, TransientJobError) and will_be_retried(exc))


def before_send(event: Event, hint: Hint) -> Event | None:
    """Drop expected outcomes and the worker's early log of an actor's exception; filter secrets."""
    exc_info = hint.get("exc_info") if hint else None
    exc = exc_info[1] if exc_info else None
    if exc is not None and is_expected_outcome(exc):
        return None
    record = hint.get("log_record") if hint else None
    if exc is not None and _is_unhandled_actor_error(record):
        # Reported by the Dramatiq integration once the outcome is known (the SDK
        # resets its dedupe memory for a dropped event, so that one is not lost).
        return None
    try:
        return redact_data(event)  # type: ignore[no-any-return]
    except Exception:
        logger.warning("Could not filter secrets out of a Sentry event; it is dropped", exc_info=True)
        return None


def _is_unhandled_actor_error(record: Any) -> bool:
    return (
        isinstance(record, logging.LogRecord)
        and record.name == _WORKER_LOGGER
        and str(record.msg).startswith(_UNHANDLED)
    )


class SentryJobTags(Middleware):
    """Tag the Sentry scope of each message with ``job_id``, ``job_type`` and ``queue``."""

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        try:
            scope = sentry_sdk.get_isolation_scope()
            scope.set_tag("job_id", message.message_id)
            scope.set_tag("job_type", message.options.get(JOB_TYPE) or message.actor_name)
            scope.set_tag("queue", message.queue_name)
        except Exception:
            logger.warning("Could not tag the Sentry scope of message %s", message.message_id, exc_info=True)
