"""The WebSocket endpoints: one job's events, or every job a user may see.

Each connection first gets the current state from the database (a snapshot
per job), then ``{"type": "live"}``, then the events published after it. Close codes: 4001 not signed in, 4004 no
such job for this user (unknown and someone else's look the same, as the
HTTP API's 404 does); no data is sent before either.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from jobs.web.realtime.groups import STAFF_GROUP, job_group, user_group
from jobs.web.realtime.state import LatestState, jobs_visible_to, snapshot_of, unfinished_snapshots

CLOSE_UNAUTHENTICATED = 4001
CLOSE_NOT_FOUND = 4004
#: Time for Redis to have processed the SUBSCRIBE the channel layer sent.
_SUBSCRIBE_MARGIN_S = 0.05


class _JobEventsConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Common part: sign-in check, group membership, snapshot-then-events ordering."""

    groups: list[str]

    async def connect(self) -> None:
        self.joined: list[str] = []
        self.state = LatestState()
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        snapshots = await self.subscribe(user)
        if snapshots is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        for snapshot in snapshots:
            self.state.remember(snapshot)
            await self.send_json(snapshot)
        # The snapshot is complete: everything after this is an event.
        await self.send_json({"type": "live"})

    async def subscribe(self, user: Any) -> list[dict[str, Any]] | None:
        """Join the groups, then read the snapshot (in this order: no event falls between)."""
        raise NotImplementedError

    async def join(self, group: str) -> None:
        """Join a group; returns once every publisher knows this group has a subscriber.

        Publishers skip groups nobody listens to, and learn of a new
        subscriber within ``JOBS_LIVE_DISCOVERY_S``: an event skipped before
        then happened before the snapshot is read, so the snapshot has it.
        """
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined.append(group)
        await asyncio.sleep(settings.JOBS_LIVE_DISCOVERY_S + _SUBSCRIBE_MARGIN_S)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def job_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        if self.state.is_news(event):
            await self.send_json(self.state.advance(event))

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients only listen; anything they send is ignored."""


class JobConsumer(_JobEventsConsumer):
    """``/ws/jobs/<id>/``: one job's status and progress."""

    async def subscribe(self, user: Any) -> list[dict[str, Any]] | None:
        job_id = str(self.scope["url_route"]["kwargs"]["job_id"])
        if not await self._may_see(user, job_id):
            return None
        await self.join(job_group(job_id))
        snapshot = await self._snapshot(user, job_id)
        return None if snapshot is None else [snapshot]

    @database_sync_to_async
    def _may_see(self, user: Any, job_id: str) -> bool:
        return bool(jobs_visible_to(user).filter(id=job_id).exists())

    @database_sync_to_async
    def _snapshot(self, user: Any, job_id: str) -> dict[str, Any] | None:
        job = jobs_visible_to(user).filter(id=job_id).first()
        return None if job is None else snapshot_of(job)


class JobStreamConsumer(_JobEventsConsumer):
    """``/ws/jobs/``: every job of the user (staff: every job), starting with the unfinished ones."""

    async def subscribe(self, user: Any) -> list[dict[str, Any]] | None:
        await self.join(STAFF_GROUP if user.is_staff else user_group(user.pk))
        return await database_sync_to_async(unfinished_snapshots)(user)


class UnknownPathConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Any other ``/ws/`` path (a malformed job id, say): closed with 4004 rather than a server error."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NOT_FOUND)
