"""Conveyor's Redis broker: Dramatiq's, with the weak spots fixed.

* Priorities and fair share: Dramatiq's Redis broker keeps one FIFO list per
  queue, so a message's priority only orders what a worker has already
  prefetched, and one customer's thousand jobs delay everyone else's. Here a
  queue's waiting messages are kept per owner and per priority
  (``jobs.worker.fairqueue``): a fetch serves high before normal, and the
  owners in turn by weight, with an optional cap per owner. Pools run with a
  prefetch equal to their thread count, so waiting messages stay in Redis
  where this order applies.
* Idle latency: Dramatiq's consumer sleeps with a growing backoff (up to a
  second) when a queue is empty. Here every enqueue pushes a token onto a
  per-queue wake-up list and an idle consumer blocks on it (BLPOP), so a job
  posted to an idle queue starts within milliseconds.
* Heartbeats: Dramatiq writes a consumer's heartbeat only when it fetches; a
  consumer whose slots are all busy stops fetching, and after the heartbeat
  timeout its running messages are handed to another worker. Here a busy
  consumer heartbeats on a timer, and runs queue maintenance (the requeue of
  dead workers' messages) on a timer too, not only by chance.
* Redis message ids start with the message id, so the reconciler can tell
  from the hash keys alone which jobs Redis holds.
* One clock: heartbeats, dead-worker cut-offs and delayed messages' due times
  are Redis's time (``jobs.core.clock.RedisClock``), never this host's, so a
  worker whose clock is off neither loses its jobs nor runs delayed ones early.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol
from uuid import uuid4

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import dq_name, q_name
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from jobs.core.clock import RedisClock
from jobs.core.messages import COST, OWNER, WEIGHT
from jobs.core.queues import UnknownQueue, get_queue
from jobs.core.redis_connection import connect_redis
from jobs.worker.fairqueue import (
    ACK_AND_FETCH_LUA,
    ENQUEUE_LUA,
    HIGH_LEVEL,
    NORMAL_LEVEL,
    OWNER_LOAD_LUA,
    PLAIN_LEVEL,
    SETTLE_LUA,
    fixed_keys,
    with_idle_credit,
)
from jobs.worker.pausing import PAUSED_POLL_S, consumer_should_wait

PRIORITY_OPTION = "conveyor_priority"
HIGH = "high"


def _enqueue_args(message: Message[Any], *, plain: bool, first: bool = False) -> list[Any]:
    """The enqueue script's arguments: the message, and the bucket it waits in (a delayed one: none).

    ``first``: at the head of its owner's bucket (work already under way), not the tail.
    """
    options = message.options
    if plain:
        level = PLAIN_LEVEL
    else:
        level = HIGH_LEVEL if options.get(PRIORITY_OPTION) == HIGH else NORMAL_LEVEL
    return [
        options["redis_message_id"],
        message.encode(),
        options.get(OWNER) or "sys",
        str(options.get(WEIGHT) or ""),
        level,
        str(options.get(COST) or ""),
        "1" if first else "",
    ]


@dataclass(frozen=True)
class OwnerLoad:
    """One owner's share of a queue right now."""

    owner: str
    waiting: int
    running: int


class ClaimAhead(Protocol):
    """Told of each message a consumer hands to its worker threads, and of those it gives back.

    The job mirror starts a message's claim as soon as it is fetched, so the
    claim's commit overlaps the time the message waits for a free thread.
    """

    def fetched(self, message: MessageProxy) -> None: ...

    def given_back(self, messages: Sequence[MessageProxy]) -> None: ...


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ConveyorRedisBroker(RedisBroker):
    """A RedisBroker with message priorities, instant wake-up and steady heartbeats."""

    def __init__(
        self,
        *,
        heartbeat_interval_ms: int | None = None,
        maintenance_interval_ms: int | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("client") is None:
            # Through Sentinel when configured (REDIS_SENTINELS): the client follows a failover.
            kwargs["client"] = connect_redis(kwargs.pop("url", None))
        super().__init__(**kwargs)
        from django.conf import settings

        self.heartbeat_interval_ms = heartbeat_interval_ms or settings.DRAMATIQ_HEARTBEAT_INTERVAL_MS
        self.maintenance_interval_ms = maintenance_interval_ms or settings.DRAMATIQ_MAINTENANCE_INTERVAL_MS
        credit = settings.FAIR_SHARE_IDLE_CREDIT_S
        self._enqueue_script = self.client.register_script(with_idle_credit(ENQUEUE_LUA, credit))
        self._ack_and_fetch_script = self.client.register_script(with_idle_credit(ACK_AND_FETCH_LUA, credit))
        self._settle_script = self.client.register_script(with_idle_credit(SETTLE_LUA, credit))
        self._owner_load_script = self.client.register_script(OWNER_LOAD_LUA)
        #: Set by the job mirror while a worker runs in this process.
        self.claim_ahead: ClaimAhead | None = None

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _ConveyorConsumer

    @cached_property
    def clock(self) -> RedisClock:
        """Redis's clock: what every heartbeat, cut-off and delayed message's eta is counted in."""
        return RedisClock(self.client)

    # -- keys -----------------------------------------------------------
    def queue_key(self, queue_name: str) -> str:
        return f"{self.namespace}:{queue_name}"

    def messages_key(self, queue_name: str) -> str:
        return f"{self.namespace}:{queue_name}.msgs"

    def wake_key(self, queue_name: str) -> str:
        return f"{self.namespace}:{queue_name}.wake"

    @property
    def heartbeats_key(self) -> str:
        return f"{self.namespace}:__heartbeats__"

    # -- enqueue --------------------------------------------------------
    def enqueue(self, message: Message, *, delay: int | None = None, first: bool = False) -> Message:
        """Send ``message`` (``first``: at the head of its owner's bucket; due now only)."""
        queue_name = message.queue_name
        message = message.copy(options={"redis_message_id": f"{message.message_id}.{uuid4().hex[:12]}"})
        if delay is not None:
            queue_name = dq_name(queue_name)
            message = message.copy(queue_name=queue_name, options={"eta": self.clock.now_ms() + delay})

        self.emit_before("enqueue", message, delay)
        self._enqueue_script(
            keys=[self.queue_key(queue_name), self.wake_key(queue_name)],
            args=_enqueue_args(message, plain=delay is not None, first=first and delay is None),
        )
        self.emit_after("enqueue", message, delay)
        return message

    def enqueue_first(self, message: Message[Any]) -> Message[Any]:
        """Send a job that was under way back at the head of its owner's bucket, due now.

        A run that made way for another owner (``Reschedule(0)``) or was given back
        on shutdown is its owner's oldest work: behind the owner's later messages,
        a document's first page range would finish last, alone on one slot.
        """
        return self.enqueue(message, first=True)

    def enqueue_many(self, messages: list[Message[Any]]) -> None:
        """Enqueue messages due now in one round trip (fan-outs, bulk creation)."""
        if len(messages) == 1:
            # A pipeline holding a script first asks Redis whether the script
            # is loaded (SCRIPT EXISTS): two round trips for one message.
            self.enqueue(messages[0])
            return
        prepared = []
        for message in messages:
            message = message.copy(options={"redis_message_id": f"{message.message_id}.{uuid4().hex[:12]}"})
            self.emit_before("enqueue", message, None)
            prepared.append(message)
        with self.client.pipeline(transaction=False) as pipe:
            for message in prepared:
                queue_name = message.queue_name
                self._enqueue_script(
                    keys=[self.queue_key(queue_name), self.wake_key(queue_name)],
                    args=_enqueue_args(message, plain=False),
                    client=pipe,
                )
            pipe.execute()
        for message in prepared:
            self.emit_after("enqueue", message, None)

    def ack_and_fetch(
        self, queue_name: str, redis_message_ids: list[str], prefetch: int, release: Sequence[str] = ()
    ) -> list[bytes | None]:
        """Acknowledge messages of one queue and fetch up to ``prefetch`` more, in one command.

        ``release``: messages whose runs are over but whose acknowledgement
        waits for a commit; their owners' running counts are given back first.
        """
        # The script unpacks the fetched ids: stay within what Dramatiq's own fetch allows.
        prefetch = min(prefetch, self._max_unpack_size())
        result = self._ack_and_fetch_script(
            keys=[self.namespace],
            args=[
                self.clock.now_ms(),
                queue_name,
                self.broker_id,
                prefetch,
                self.max_per_owner(queue_name),
                len(redis_message_ids),
                *redis_message_ids,
                *release,
            ],
        )
        return list(result)

    def max_per_owner(self, queue_name: str) -> int:
        """The queue table's cap on one owner's running jobs (0: none)."""
        try:
            return get_queue(q_name(queue_name)).max_per_owner
        except UnknownQueue:
            return 0

    def ack_many(self, queue_name: str, redis_message_ids: list[str], release: Sequence[str] = ()) -> None:
        """Acknowledge several messages of one queue in one command (and release others, see ``ack_and_fetch``)."""
        self.ack_and_fetch(queue_name, redis_message_ids, 0, release)

    # -- liveness -------------------------------------------------------
    def heartbeat(self, queue_name: str, *, maintenance: bool = False) -> None:
        """Record this process's heartbeat; optionally requeue dead workers' messages now."""
        self.scripts["dispatch"](
            args=[
                "heartbeat",  # not a dispatch command: the script only heartbeats (and maintains)
                self.clock.now_ms(),
                queue_name,
                self.broker_id,
                self.heartbeat_timeout,
                self.dead_message_ttl,
                "1" if maintenance else "0",
                self._max_unpack_size(),
            ],
            keys=[self.namespace],
        )

    def _dispatch(self, command: str) -> Callable[..., Any]:
        if command in ("ack", "nack"):
            return self._settle(command)
        if command == "purge":
            return self._purge
        return self._dramatiq_dispatch(command)

    def _settle(self, command: str) -> Callable[..., Any]:
        # Dramatiq's ack and nack, giving the owner's running count back (jobs/worker/fairqueue.py).
        def settle(queue_name: str, redis_message_id: str) -> Any:
            return self._settle_script(
                keys=[self.namespace],
                args=[command, self.clock.now_ms(), queue_name, self.broker_id, redis_message_id],
            )

        return settle

    def _purge(self, queue_name: str) -> None:
        self._dramatiq_dispatch("purge")(queue_name)
        base = self.queue_key(queue_name)
        buckets = list(self.client.scan_iter(match=f"{base}.b.*", count=1000))
        self.client.delete(*fixed_keys(base), *buckets)

    def _dramatiq_dispatch(self, command: str) -> Callable[..., Any]:
        # Dramatiq's own, with Redis's time: every dispatch command (ack,
        # nack, requeue) heartbeats, and its maintenance takes the workers
        # whose heartbeat is older than this timestamp minus the timeout for
        # dead. This host's clock running ahead would declare live workers dead.
        dispatch = self.scripts["dispatch"]
        keys = [self.namespace]

        def do_dispatch(queue_name: str, *args: Any) -> Any:
            return dispatch(
                args=[
                    command,
                    self.clock.now_ms(),
                    queue_name,
                    self.broker_id,
                    self.heartbeat_timeout,
                    self.dead_message_ttl,
                    self._should_do_maintenance(command),
                    self._max_unpack_size(),
                    *args,
                ],
                keys=keys,
            )

        return do_dispatch

    def live_worker_ids(self) -> set[str]:
        """Broker ids (one per worker process) whose heartbeat is recent."""
        cutoff = self.clock.now_ms() - self.heartbeat_timeout
        return {_text(wid) for wid in self.client.zrangebyscore(self.heartbeats_key, cutoff, "+inf")}

    def is_worker_alive(self, worker_id: str) -> bool:
        score = self.client.zscore(self.heartbeats_key, worker_id)
        return score is not None and score >= self.clock.now_ms() - self.heartbeat_timeout

    def message_ids_in_redis(self, queue_name: str) -> set[str]:
        """Ids of every message Redis holds for a queue: waiting, delayed or being processed."""
        with self.client.pipeline(transaction=True) as pipe:
            # The delay queue first: a message moves from it to the main
            # queue (enqueue, then ack), so this order never misses one.
            pipe.hkeys(self.messages_key(dq_name(queue_name)))
            pipe.hkeys(self.messages_key(queue_name))
            delayed, waiting = pipe.execute()
        return {_text(key).split(".", 1)[0] for key in (*delayed, *waiting)}

    def in_flight_message_ids(self) -> dict[str, set[str]]:
        """Per queue, ids of messages that workers have fetched and not yet acknowledged (one key scan)."""
        prefix = f"{self.namespace}:__acks__."
        keys = [_text(key) for key in self.client.scan_iter(match=prefix + "*", count=1000)]
        if not keys:
            return {}
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.smembers(key)
            members = pipe.execute()
        in_flight: dict[str, set[str]] = {}
        for key, group in zip(keys, members, strict=True):
            # <namespace>:__acks__.<worker id>.<queue>; worker ids and queue names hold no dots.
            queue_name = key[len(prefix) :].split(".", 1)[-1]
            in_flight.setdefault(queue_name, set()).update(_text(member).split(".", 1)[0] for member in group)
        return in_flight

    def queue_depth(self, queue_name: str) -> int:
        """Messages waiting in a queue: in its owners' buckets, and put back but not yet filed."""
        base = self.queue_key(queue_name)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.get(f"{base}.count")
            pipe.llen(base)
            filed, inbox = pipe.execute()
        return int(filed or 0) + int(inbox or 0)

    def others_waiting(self, queue_name: str, owner: str, *, high: bool) -> bool:
        """Whether another owner has a message waiting that fair dispatch would serve next to ``owner``'s:
        in the high ring, or in either ring when ``owner``'s own job is not high priority."""
        base = self.queue_key(queue_name)
        rings = [f"{base}.fq.h"] if high else [f"{base}.fq.h", f"{base}.fq.n"]
        with self.client.pipeline(transaction=False) as pipe:
            for ring in rings:
                pipe.zcard(ring)
                pipe.zscore(ring, owner)
            replies = pipe.execute()
        counts, own_scores = replies[::2], replies[1::2]
        return any(int(count) - (own is not None) > 0 for count, own in zip(counts, own_scores, strict=True))

    def owner_load(self, queue_name: str, limit: int = 1000) -> list[OwnerLoad]:
        """Per owner of a queue, the messages waiting and running (fetched, not yet settled), busiest first."""
        flat = self._owner_load_script(keys=[self.queue_key(queue_name)], args=[limit])
        loads = [OwnerLoad(_text(flat[i]), int(flat[i + 1]), int(flat[i + 2])) for i in range(0, len(flat), 3)]
        return sorted(loads, key=lambda load: (-(load.waiting + load.running), load.owner))


class AckGate:
    """Holds back a message's acknowledgement until its job's final state is committed.

    The job mirror opens a gate when it hands a completion to the state
    writer without waiting; the consumer frees the worker slot at once but
    acknowledges the message to Redis only once the gate opens. A crash in
    between redelivers the message, and the redelivered copy is skipped if
    the completion had committed.
    """

    _gates: dict[str, AckGate] = {}
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._open = threading.Event()
        self._consumer: _ConveyorConsumer | None = None

    @classmethod
    def hold(cls, message_id: str) -> AckGate:
        gate = cls()
        with cls._lock:
            cls._gates[message_id] = gate
        return gate

    @classmethod
    def take(cls, message_id: str) -> AckGate | None:
        with cls._lock:
            return cls._gates.pop(message_id, None)

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def open(self) -> None:
        self._open.set()
        consumer = self._consumer
        if consumer is not None:
            consumer._slot_freed.set()  # wake it to send the acknowledgement

    def wait(self, timeout: float) -> bool:
        return self._open.wait(timeout)


class _ConveyorConsumer(_RedisConsumer):
    """A consumer that blocks instead of polling, heartbeats while busy, and acks after commit."""

    broker: ConveyorRedisBroker

    def __init__(self, broker: ConveyorRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self._slot_freed = threading.Event()
        self._last_heartbeat = 0.0
        self._last_maintenance = time.monotonic()
        self._held: list[tuple[MessageProxy, AckGate]] = []
        #: Held messages whose owners' running counts Redis has not been told to give back yet.
        self._unreleased: list[str] = []
        self._held_lock = threading.Lock()
        # Delayed messages only wait here to be moved to their queue: nothing to claim.
        self._runs_jobs = q_name(queue_name) == queue_name

    def ack(self, message: MessageProxy) -> None:
        gate = AckGate.take(message.message_id)
        if gate is not None and not gate.is_open:
            # Free the slot now; acknowledge once the job's state is committed.
            with self._held_lock:
                gate._consumer = self
                self._held.append((message, gate))
                self._unreleased.append(message.options["redis_message_id"])
            self.queued_message_ids.discard(message.message_id)
            self._slot_freed.set()
            return
        try:
            super().ack(message)
        finally:
            self._slot_freed.set()

    def _take_released(self, wait_s: float = 0.0) -> list[str]:
        """Redis ids of held messages whose gate has opened (waiting up to ``wait_s`` for all)."""
        with self._held_lock:
            held, self._held = self._held, []
        still_held = []
        released = []
        deadline = time.monotonic() + wait_s
        for message, gate in held:
            if gate.is_open or gate.wait(max(0.0, deadline - time.monotonic())):
                released.append(message.options["redis_message_id"])
            else:
                still_held.append((message, gate))
        if still_held:
            with self._held_lock:
                self._held.extend(still_held)
        return released

    def _take_unreleased(self) -> list[str]:
        with self._held_lock:
            unreleased, self._unreleased = self._unreleased, []
        return unreleased

    def close(self) -> None:
        try:
            released = self._take_released(wait_s=10.0)
            if released:
                self.broker.ack_many(self.queue_name, released)
        except redis.ConnectionError:
            pass
        super().close()

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        """Give fetched messages back to the queue (a shutdown): their early claims are undone first."""
        messages = list(messages)
        claim_ahead = self.broker.claim_ahead
        if claim_ahead is not None and self._runs_jobs:
            claim_ahead.given_back(messages)
        super().requeue(messages)

    def nack(self, message: MessageProxy) -> None:
        try:
            super().nack(message)
        finally:
            self._slot_freed.set()

    def _keep_alive(self) -> None:
        now = time.monotonic()
        maintenance = (now - self._last_maintenance) * 1000 >= self.broker.maintenance_interval_ms
        if maintenance or (now - self._last_heartbeat) * 1000 >= self.broker.heartbeat_interval_ms:
            self.broker.heartbeat(self.queue_name, maintenance=maintenance)
            self._last_heartbeat = now
            if maintenance:
                self._last_maintenance = now

    def __next__(self) -> MessageProxy | None:
        try:
            while self.message_cache:
                data = self.message_cache.pop(0)
                if data is None:  # the hash entry vanished (acked elsewhere)
                    continue
                message = Message.decode(data)
                self.queued_message_ids.add(message.message_id)
                eta = message.options.get("eta")
                if isinstance(eta, int | float):
                    # The eta is Redis's time; Dramatiq's worker compares it
                    # with this host's clock, so it waits for the host's
                    # reading of that moment. Only this copy changes: Redis
                    # keeps the message as it was sent.
                    message.options["eta"] = self.broker.clock.to_local_ms(eta)
                proxy = MessageProxy(message)
                claim_ahead = self.broker.claim_ahead
                if claim_ahead is not None and self._runs_jobs and "eta" not in message.options:
                    claim_ahead.fetched(proxy)
                return proxy

            # Acknowledgements go out with the next fetch: one command for both.
            acks = self._take_released() if self._held else []
            release = self._take_unreleased() if self._unreleased else []
            # A paused queue (jobs/pausing.py, cached ~1 s) hands out nothing, not even prefetched messages.
            if consumer_should_wait(self.broker, self.queue_name):
                if acks or release:
                    self.broker.ack_many(self.queue_name, acks, release)
                self._keep_alive()
                time.sleep(PAUSED_POLL_S)
                return None

            free_slots = self.prefetch - self.outstanding_message_count
            if free_slots > 0:
                self._keep_alive()
                self.message_cache = self.broker.ack_and_fetch(self.queue_name, acks, free_slots, release)
                self._last_heartbeat = time.monotonic()  # every fetch heartbeats
                if self.message_cache:
                    return self.__next__()
                # Idle: sleep until an enqueue announces a message (or the
                # timeout passes, so the worker can look at its delay queue).
                try:
                    self.broker.client.blpop([self.broker.wake_key(self.queue_name)], timeout=self.timeout / 1000)
                except redis.TimeoutError:
                    pass  # the client's socket timeout fired first: same as an idle timeout
                return None

            if acks or release:
                self.broker.ack_many(self.queue_name, acks, release)
            # Every slot is busy: wait for one to free, heartbeating meanwhile.
            self._keep_alive()
            self._slot_freed.wait(timeout=min(self.timeout, self.broker.heartbeat_interval_ms) / 1000)
            self._slot_freed.clear()
            return None
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None
