"""The platform's Dramatiq middleware, added to the broker once Django's apps are loaded.

django_dramatiq builds the broker from ``DRAMATIQ_BROKER`` while the app
registry is still being populated, before any model can be imported; this
middleware works on the job tables, so ``JobsConfig.ready`` adds it here.
Actors are declared later (workers import the ``tasks`` modules after
``django.setup()``), so their custom options are known by then.

Order matters: before-hooks run in list order, after-hooks in reverse. The
mirror claims the job before the watchdog starts watching it, and the
watchdog lets go of it before the mirror writes the outcome.
"""

from __future__ import annotations

import dramatiq
from django.conf import settings

from jobs.worker.middleware.mirror import JobMirror
from jobs.worker.middleware.presence import WorkerPresence
from jobs.worker.middleware.sentry_tags import SentryJobTags
from jobs.worker.middleware.watchdog import JobWatchdog


def install_platform_middleware(broker: dramatiq.Broker) -> None:
    """Add the mirror, the watchdog, presence (and Sentry tags) to ``broker``, once."""
    if any(isinstance(middleware, JobMirror) for middleware in broker.middleware):
        return
    broker.add_middleware(JobMirror())
    broker.add_middleware(JobWatchdog())
    broker.add_middleware(WorkerPresence())
    if settings.SENTRY_DSN:
        # Tags each worker event with the job's id and type (after the mirror, which knows the job).
        broker.add_middleware(SentryJobTags())
