"""Sends job events to the channel layer from a background thread, in batches.

The callers of ``jobs.state.events`` include a worker's hot path (its state writer
and job threads), so ``submit`` only appends to an in-memory queue. One
daemon thread per process takes whatever has queued up, finds the owners it
does not know yet (one query for the batch, then cached), and publishes
every event to its groups with one Redis command (a script of PUBLISHes). The
channel layer is ``channels_redis``' pub/sub layer, where ``group_send`` is a
single ``PUBLISH`` of the serialized message, so writing the same command
here reaches the consumers exactly as ``group_send`` would.

Events nobody listens to are not published at all: the thread asks Redis
which group channels have subscribers (``PUBSUB CHANNELS``, at most every
``JOBS_LIVE_DISCOVERY_S``) and publishes an event only to those of its
groups that do; while Redis says nobody listens, ``submit`` drops events
before they are queued. Publishing every claim and completion to nobody cost
a busy worker about a quarter of its throughput. A consumer that has just
subscribed waits one discovery interval before it reads its snapshot
(``jobs.web.realtime.consumers``), so an event the publisher skipped because it
did not know the subscriber yet is in that snapshot.

Nothing here raises into a caller: with Redis or the database down, events
are logged and dropped (a client reconnecting gets a fresh snapshot), and
past ``_MAX_PENDING`` queued events new ones are dropped.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any

import msgpack  # type: ignore[import-untyped]  # channels_redis' own serializer library
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from jobs.core.redis_connection import connect_redis
from jobs.models import Job
from jobs.state.events import JobEvent, add_event_listener
from jobs.web.realtime.groups import EVENT_MESSAGE_TYPE, group_channel_prefix, groups_for, layer_config

logger = logging.getLogger(__name__)

_MAX_BATCH = 500
_MAX_PENDING = 10_000
_MAX_OWNERS_CACHED = 20_000
_IDLE_CLOSE_S = 0.25
# ARGV[1]: the group channel prefix; ARGV[2]: msgpack of [[message, [group, ...]], ...]
# (old-style raw strings: Redis' cmsgpack does not read the bin type).
_PUBLISH_ALL = """
local prefix = ARGV[1]
for _, delivery in ipairs(cmsgpack.unpack(ARGV[2])) do
    for _, group in ipairs(delivery[2]) do
        redis.call('PUBLISH', prefix .. group, delivery[1])
    end
end
return 1
"""


class LivePublisher:
    """One per process; restarts its thread in a forked child (worker processes are forked)."""

    def __init__(self) -> None:
        self._pid = 0
        self._pending: queue.SimpleQueue[JobEvent] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._owners: dict[str, int | None] = {}
        self._publish_all: Any = None
        self._channel_prefix = ""
        self._dropped = 0
        #: Group channels with a subscriber, and when Redis said so (monotonic; 0: never asked).
        self._listened: frozenset[bytes] = frozenset()
        self._listened_at = 0.0

    def submit(self, event: JobEvent) -> None:
        """Queue an event for publishing; never blocks, never raises."""
        if self._pid != os.getpid():
            self._start()
        if not self._listened and time.monotonic() - self._listened_at < _discovery_s():
            return  # nobody listens to any group, and that answer is fresh
        if self._pending.qsize() >= _MAX_PENDING:
            self._dropped += 1
            if self._dropped % 1000 == 1:
                logger.warning("Live events are not being published fast enough; %d dropped", self._dropped)
            return
        self._pending.put(event)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # A fresh queue and connection: a forked child inherits neither thread nor socket usably.
            self._pending = queue.SimpleQueue()
            self._publish_all = None
            self._owners = {}
            self._listened, self._listened_at = frozenset(), 0.0
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="conveyor-live-publisher", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                batch = [self._pending.get(timeout=_IDLE_CLOSE_S)]
            except queue.Empty:
                # Idle: give the owner lookups' connection back (a test database must be droppable).
                connection.close()
                continue
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            try:
                self.publish(batch)
            except Exception:
                logger.warning("Could not publish %d live job events; dropped", len(batch), exc_info=True)
                self._publish_all = None

    def publish(self, batch: list[JobEvent]) -> None:
        """Send a batch to every group that should see it and has a subscriber: one Redis command."""
        prefix = self._channel_prefix or group_channel_prefix()
        self._channel_prefix = prefix
        listened = self._listened_channels(prefix)
        if not listened:
            return
        owners = self._owners_of(batch)  # learns the owners claims and completions carry
        layer = get_channel_layer()
        if layer is None:  # CHANNEL_LAYERS is always configured; without it there is nobody to tell
            return
        deliveries = []
        for event in batch:
            owner = event.owner_id if event.owner_known else owners.get(event.job_id)
            groups = [group for group in groups_for(event.job_id, owner) if (prefix + group).encode() in listened]
            if groups:
                message = layer.serialize({"type": EVENT_MESSAGE_TYPE, "event": event.as_message()})
                deliveries.append((message, groups))
        if deliveries:
            self._script()(args=[prefix, msgpack.packb(deliveries, use_bin_type=False)])

    def _listened_channels(self, prefix: str) -> frozenset[bytes]:
        """The group channels with at least one subscriber, asked again once the answer is stale."""
        if time.monotonic() - self._listened_at >= _discovery_s():
            channels = self._script().registered_client.pubsub_channels(f"{_glob_escape(prefix)}*")
            self._listened = frozenset(channels)
            self._listened_at = time.monotonic()
        return self._listened

    def _script(self) -> Any:
        """The publishing script, registered on this thread's Redis client (``.registered_client``)."""
        if self._publish_all is None:
            host = layer_config()["hosts"][0]
            # The layer's own Redis; a Sentinel entry has no address: the configured master then.
            url = host if isinstance(host, str) else host.get("address")
            # Short timeouts: a hung Redis must not pile events up behind one batch for long.
            client = connect_redis(url, socket_timeout=2, socket_connect_timeout=2)
            # One command, one argument for the whole batch: a pipeline of PUBLISHes cost
            # ~20 us of client CPU per command here (packing each, parsing each reply).
            self._publish_all = client.register_script(_PUBLISH_ALL)
        return self._publish_all

    def _owners_of(self, batch: list[JobEvent]) -> dict[str, int | None]:
        """Owner ids of the batch's jobs: cached, else one query for all the unknown ones."""
        if len(self._owners) > _MAX_OWNERS_CACHED:
            self._owners.clear()
        for event in batch:
            if event.owner_known:
                self._owners[event.job_id] = event.owner_id
        unknown = sorted({event.job_id for event in batch if event.job_id not in self._owners})
        if unknown:
            try:
                found = _owner_ids(Job, unknown)
                self._owners.update({job_id: found.get(job_id) for job_id in unknown})
            except Exception:
                # Still published to the job's own group and to staff; the next batch reconnects.
                logger.warning("Could not look up the owners of %d jobs", len(unknown), exc_info=True)
                connection.close()
        return self._owners


def _discovery_s() -> float:
    return float(settings.JOBS_LIVE_DISCOVERY_S)


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a Redis glob pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def _owner_ids(job_model: Any, job_ids: list[str]) -> dict[str, int | None]:
    # Plain SQL: compiling the ORM query cost more CPU than running it (as in jobs.state.batch).
    pk = job_model._meta.pk
    marks = ", ".join(["%s"] * len(job_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            # marks is a run of %s placeholders; the ids are parameters.
            f"SELECT id, owner_id FROM {job_model._meta.db_table} WHERE id IN ({marks})",  # noqa: S608
            [pk.get_db_prep_value(job_id, connection) for job_id in job_ids],
        )
        return {str(pk.to_python(job_id)): owner_id for job_id, owner_id in cursor.fetchall()}


publisher = LivePublisher()


def install() -> None:
    """Send every job event to the channel layer (called once at app start)."""
    add_event_listener(publisher.submit)
