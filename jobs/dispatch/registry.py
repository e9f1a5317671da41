"""Job types: what ``POST /api/jobs/<type>`` can start, registered by the apps that own them.

``jobs`` never imports a domain app; each app registers its job types when
it is ready, naming its actor and the serializer that validates the payload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobs.core.exceptions import UnknownJobType
from jobs.core.origin import JobOrigin, Via
from jobs.models import JobPriority

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from rest_framework.serializers import Serializer

    from jobs.dispatch.outcomes import ChildrenSummary, JobOutcome
    from jobs.models import Job

    User = AbstractBaseUser | AnonymousUser


@dataclass
class JobPlan:
    """What to start for a validated request (a domain app's ``plan`` returns one)."""

    arguments: dict[str, Any]
    priority: str = JobPriority.NORMAL
    schedule_at: datetime | None = None
    queue: str | None = None
    actor: str | None = None
    estimated_duration_s: float | None = None
    #: An existing job to answer with instead of starting a new one (a
    #: duplicate request for work that is already running).
    existing_job: Job | None = None
    #: Called with the new Job inside the same transaction, to link domain rows to it.
    on_created: Callable[[Job], None] | None = None
    #: The job's ``data`` from the start (say, the id of the row it will produce).
    initial_data: dict[str, Any] | None = None


def default_plan(user: Any, data: dict[str, Any]) -> JobPlan:
    data = dict(data)
    priority = data.pop("priority", JobPriority.NORMAL) or JobPriority.NORMAL
    schedule_at = data.pop("schedule_at", None)
    return JobPlan(arguments=data, priority=priority, schedule_at=schedule_at)


@dataclass(frozen=True)
class JobType:
    """A kind of job: its queue and actor (declared here once), and how a request starts it.

    A type without a ``serializer`` is internal: a fan-out's children or a
    system job, started by code only and never through ``POST /api/jobs/<type>``.
    """

    name: str
    queue: str
    actor: str
    serializer: type[Serializer[Any]] | None
    description: str
    default_duration_s: float = 30.0
    staff_only: bool = False
    #: A model permission the requester needs too (``"campaigns.add_campaign"``): staff alone is not enough.
    permission: str | None = None
    #: Whether a customer's request may be refused (503) while the queue's backlog is at its
    #: ceiling (``jobs.dispatch.backpressure``). False for work that loses its point if it
    #: waits for the client to come back (a send time, a liveness probe). Internal types (no
    #: serializer) and staff's requests are never checked, whatever this says.
    deferrable: bool = True
    plan: Callable[[Any, dict[str, Any]], JobPlan] = field(default=default_plan)
    #: The origin of every job of this type, whoever starts it: ``JobOrigin.CANARY`` or
    #: ``JobOrigin.MAINTENANCE`` for the platform's own work (cleanup, reports, repairs of
    #: customers' rows). None: decided by how the job is started (``origin_for``).
    origin: JobOrigin | None = None
    #: For a type that fans out: called by the last finishing child with the
    #: parent and a summary of the children's outcomes; returns the parent's
    #: result (raising fails the parent).
    on_children_done: Callable[[JobOutcome, ChildrenSummary], Any] | None = None
    #: Outcome hooks (``jobs.dispatch.outcomes`` says when each runs): after
    #: the final commit, at least once, so they must be idempotent.
    on_finished: Callable[[JobOutcome], None] | None = None
    on_failed: Callable[[JobOutcome], None] | None = None
    on_cancelled: Callable[[JobOutcome], None] | None = None
    #: At the cancel request (waiting or running), before the run notices.
    on_cancel_requested: Callable[[JobOutcome], None] | None = None
    #: The ids of this type's jobs that domain rows still wait on for an
    #: outcome; the reconciler delivers again those that have finished.
    unsettled: Callable[[], Iterable[Any]] | None = None

    def payload_serializer(self) -> type[Serializer[Any]]:
        """The serializer of a request's payload; an internal type has none (UnknownJobType)."""
        if self.serializer is None:
            raise UnknownJobType(self.name)
        return self.serializer


_registry: dict[str, JobType] = {}


def register_job_type(job_type: JobType) -> JobType:
    _registry[job_type.name] = job_type
    return job_type


def get_job_type(name: str, *, startable: bool = False) -> JobType:
    """The registered type; with ``startable``, only one a request may start (it has a serializer)."""
    job_type = _registry.get(name)
    if job_type is None or (startable and job_type.serializer is None):
        raise UnknownJobType(name)
    return job_type


def job_types() -> dict[str, JobType]:
    return dict(_registry)


def origin_for(type_name: str, *, has_parent: bool, via: str) -> JobOrigin:
    """Whose work a new job is (``jobs.core.origin.JobOrigin`` gives the precedence)."""
    if has_parent:
        return JobOrigin.CHILD
    job_type = _registry.get(type_name)
    if job_type is not None and job_type.origin is not None:
        return job_type.origin
    if via == Via.SCHEDULE:
        return JobOrigin.SCHEDULE
    return JobOrigin.CUSTOMER


def types_of_origin(origin: JobOrigin) -> list[str]:
    """The registered types whose every job has ``origin`` (the origin back-fill reads them)."""
    return sorted(name for name, job_type in _registry.items() if job_type.origin == origin)


def default_duration_for(type_name: str) -> float:
    job_type = _registry.get(type_name)
    return job_type.default_duration_s if job_type else 30.0
