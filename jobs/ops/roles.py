"""Which processes a host runs: its roles (web, workers, scheduler) and its queues.

One machine runs all three roles (``make run``). Across several hosts each
runs a part: ``runconveyor --role web`` on the web hosts, ``--role workers
--queues pdf-processing,thumbnails`` on a worker host (one pool per queue
named), ``--role scheduler`` wherever convenient (several may run: each fire
happens once). :func:`host_specs` turns a choice into the supervisor's specs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from jobs.core.queues import QueuePolicy, all_queues
from jobs.ops.supervisor import ChildSpec, pool_spec, scheduler_spec, web_spec


class Role(enum.StrEnum):
    WEB = "web"
    WORKERS = "workers"
    SCHEDULER = "scheduler"


ALL_ROLES: tuple[Role, ...] = tuple(Role)


class RoleChoiceError(ValueError):
    """A ``--role`` or ``--queues`` value that names nothing this system runs."""


def _split(values: Iterable[str]) -> list[str]:
    # Each value may itself list several, comma-separated: "--role web,scheduler".
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def parse_roles(values: Sequence[str] | None) -> tuple[Role, ...]:
    """The roles named (each once, in the order web, workers, scheduler); none named means all."""
    if not values:
        return ALL_ROLES
    names = _split(values)
    if not names:
        raise RoleChoiceError("--role is empty: choose from " + ", ".join(ALL_ROLES))
    known = {role.value: role for role in ALL_ROLES}
    for name in names:
        if name not in known:
            raise RoleChoiceError(f"unknown role {name!r}: choose from " + ", ".join(ALL_ROLES))
    return tuple(role for role in ALL_ROLES if role.value in names)


def parse_queues(value: str | None) -> tuple[QueuePolicy, ...]:
    """The queues named (comma-separated, in the queue table's order); ``None`` means every queue."""
    table = all_queues()
    if value is None:
        return table
    known = [policy.name for policy in table]
    names = _split([value])
    if not names:
        raise RoleChoiceError("--queues is empty: name one or more of " + ", ".join(known))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise RoleChoiceError(
            "unknown queue " + ", ".join(repr(name) for name in unknown) + ": the queues are " + ", ".join(known)
        )
    return tuple(policy for policy in table if policy.name in names)


def host_specs(roles: Sequence[Role], queues: Sequence[QueuePolicy]) -> list[ChildSpec]:
    """The processes a host with these roles runs: uvicorn, one pool per queue, the scheduler."""
    specs: list[ChildSpec] = []
    if Role.WEB in roles:
        specs.append(web_spec())
    if Role.WORKERS in roles:
        specs.extend(pool_spec(policy) for policy in queues)
    if Role.SCHEDULER in roles:
        specs.append(scheduler_spec())
    return specs
