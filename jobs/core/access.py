"""Who may see what: staff see every row, everyone else only their own. Written once, used everywhere."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)


def sees_everything(user: Any) -> bool:
    return bool(getattr(user, "is_staff", False))


def visible_to(queryset: QuerySet[M], user: Any, owner_field: str = "owner") -> QuerySet[M]:
    """The rows of ``queryset`` that ``user`` may see: all for staff, their own otherwise, none if anonymous."""
    if sees_everything(user):
        return queryset
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    return queryset.filter(**{owner_field: user})


def may_see(user: Any, owner_id: int | None) -> bool:
    """Whether ``user`` may see one row owned by ``owner_id``."""
    return sees_everything(user) or (getattr(user, "is_authenticated", False) and owner_id == user.pk)


#: The permission that lets a non-staff user start jobs at high priority.
HIGH_PRIORITY_PERMISSION = "jobs.set_high_priority"
#: The permission behind the admin's and console's retry, cancel, pause and resume.
CONTROL_PERMISSION = "jobs.change_job"


def may_set_high_priority(user: Any) -> bool:
    """Staff, or a user granted ``jobs.set_high_priority``; system jobs (schedules, canaries) never ask."""
    return sees_everything(user) or bool(
        getattr(user, "is_authenticated", False) and user.has_perm(HIGH_PRIORITY_PERMISSION)
    )


def may_control_jobs(user: Any) -> bool:
    """Retry, cancel, pause and resume from the admin: ``jobs.change_job`` (view permission is not enough)."""
    return bool(getattr(user, "is_authenticated", False) and user.has_perm(CONTROL_PERMISSION))
