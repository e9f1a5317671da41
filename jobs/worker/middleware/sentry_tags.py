"""Sentry for web and workers: set up from settings when ``SENTRY_DSN`` is set, events tagged with the job.

``init_sentry`` runs while the settings load, so it comes before django_dramatiq
builds the broker: Sentry's Dramatiq integration patches ``Broker.__init__`` to
put its own middleware first, which opens a Sentry scope per message and
reports the actor's exception. ``SentryJobTags`` (listed in the broker's middleware
when ``SENTRY_DSN`` is set) writes the job's id and type on that scope, so every event from
a job carries them.
"""

from __future__ import annotations

import logging

import dramatiq
import sentry_sdk
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from jobs.core.messages import JOB_TYPE

logger = logging.getLogger(__name__)


def init_sentry(dsn: str, environment: str) -> None:
    """Report errors of this process (web or worker) to Sentry; no performance tracing, no personal data."""
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.dramatiq import DramatiqIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), DramatiqIntegration()],
        traces_sample_rate=0.0,
        send_default_pii=False,
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
