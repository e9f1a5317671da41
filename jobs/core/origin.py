"""Who started or changed something, and through which door: the audit trail's vocabulary.

A job records its :class:`Origin` on its own row (``created_via``,
``created_by``): one more column costs nothing at enqueue, an extra insert
would. Cancel, retry, pause, resume and template edits each add an
``AuditEvent`` row with the origin of the person (or command) who did it.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

from django.db import models


class Via(models.TextChoices):
    API = "api", "API"
    ADMIN = "admin", "admin"
    COMMAND = "command", "manage.py"
    SCHEDULE = "schedule", "schedule"
    SYSTEM = "system", "system"


class JobOrigin(models.TextChoices):
    """Whose work a job is, decided once when it is created (``jobs.dispatch.registry.origin_for``).

    ``created_via`` says through which door a job came in; this says what the
    job is for, which statistics need: a canary started by staff through the
    API is still a canary, and maintenance that repairs a customer's
    documents is still the platform's work, owner or not. Precedence: a
    child of another job is ``child`` whatever its type; a type that
    declares an origin (canary, maintenance) has it; a schedule's fire is
    ``schedule``; anything else is a customer's request.
    """

    CUSTOMER = "customer", "customer request"
    CHILD = "child", "child of another job"
    SCHEDULE = "schedule", "schedule"
    CANARY = "canary", "canary"
    MAINTENANCE = "maintenance", "maintenance"


#: The platform's own work: the console and the weekly report show it in their "system" section.
SYSTEM_ORIGINS: tuple[JobOrigin, ...] = (JobOrigin.CANARY, JobOrigin.MAINTENANCE)


class AuditAction(models.TextChoices):
    CANCEL = "cancel", "cancel"
    RETRY = "retry", "retry"
    PAUSE = "pause", "pause"
    RESUME = "resume", "resume"
    TEMPLATE_CREATED = "template-created", "template created"
    TEMPLATE_CHANGED = "template-changed", "template changed"
    TEMPLATE_DELETED = "template-deleted", "template deleted"


#: Longest ``created_by`` / actor label kept (Django's username is at most 150 characters).
LABEL_MAX = 150


@dataclass(frozen=True)
class Origin:
    """Through which door (``via``) and by whom (``by``: a username, a schedule's name, an OS user)."""

    via: Via
    by: str = ""
    user: Any = None

    @classmethod
    def of_user(cls, user: Any, via: Via) -> Origin:
        signed_in = getattr(user, "is_authenticated", False)
        return cls(via, user.get_username()[:LABEL_MAX] if signed_in else "", user if signed_in else None)

    @classmethod
    def command(cls) -> Origin:
        """``manage.py`` run by an operator: the OS account is who."""
        try:
            who = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry for the uid (some containers)
            who = ""
        return cls(Via.COMMAND, who[:LABEL_MAX])

    @classmethod
    def schedule(cls, name: str) -> Origin:
        return cls(Via.SCHEDULE, name[:LABEL_MAX])


SYSTEM = Origin(Via.SYSTEM)
