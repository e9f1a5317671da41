"""Channel-layer groups of job events, shared by the publisher and the consumers."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings

#: Every job's events, for staff.
STAFF_GROUP = "staff"
#: The consumer method a group message is handed to ("job.event" -> ``job_event``).
EVENT_MESSAGE_TYPE = "job.event"


def job_group(job_id: Any) -> str:
    return f"job.{job_id}"


def user_group(user_id: Any) -> str:
    return f"user.{user_id}"


def groups_for(job_id: str, owner_id: int | None) -> list[str]:
    """Where one job's event goes: its own group, staff, and its owner's stream."""
    groups = [job_group(job_id), STAFF_GROUP]
    if owner_id is not None:
        groups.append(user_group(owner_id))
    return groups


def layer_config() -> dict[str, Any]:
    return cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])


def group_channel_prefix() -> str:
    """Prefix of the Redis pub/sub channel ``channels_redis.pubsub`` uses for a group (one host)."""
    return f"{layer_config().get('prefix', 'asgi')}__group__"
