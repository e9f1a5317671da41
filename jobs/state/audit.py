"""Writing the audit trail (``AuditEvent``): one row per operator action."""

from __future__ import annotations

from typing import Any

from jobs.core.origin import AuditAction, Origin
from jobs.models.audit import AuditEvent


def record_audit(
    action: AuditAction, origin: Origin, target_type: str, target_id: object, detail: dict[str, Any] | None = None
) -> AuditEvent:
    """Add the row saying that ``origin`` did ``action`` to ``target_type`` ``target_id``."""
    return AuditEvent.objects.create(
        action=action,
        via=origin.via,
        actor=origin.user,
        actor_label=origin.by,
        target_type=target_type,
        target_id=str(target_id)[:64],
        detail=detail or {},
    )
