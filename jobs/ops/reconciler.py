"""Makes Redis hold exactly the messages the Job table says it should.

One pass does these things, each safe to repeat and to run from several
processes at once (a worker skips a message whose Job is not waiting for it):

* sends jobs that were recorded but never sent (Redis was down at enqueue)
  and jobs whose message Redis lost (restart without persistence);
* sends again waiting jobs whose message a live worker fetched but never
  got: the fetch ran in Redis and its reply was lost to a dropped
  connection, so the message sits in the worker's in-flight set, where
  Dramatiq only recovers it once that worker dies;
* sends scheduled jobs that have come due (delays live in the database);
* gives back running jobs whose worker died and whose message is gone;
* delivers again the outcome hooks of finished jobs that domain rows still
  wait on (``jobs.dispatch.outcomes.deliver_unsettled``);
* puts back into Redis the paused queues the database records
  (``jobs.worker.pausing.restore_paused_queues``).

**Redis restarted empty** (no AOF, a flush, a fail-over to an empty
replica). Every message is gone, and so are the heartbeats: right after such
a restart no worker looks alive, yet the workers are running their jobs and
will heartbeat again as soon as their consumers reconnect. Judging them then
would requeue jobs that are still running, and they would run twice. So a
pass calls no worker dead until the workers have had their chance: a marker
``<namespace>:__epoch__`` holds, on Redis's own clock (``TIME``), when this
Redis's data began; the first pass that finds it missing sets it (atomically,
so several schedulers agree), and the running-jobs step waits until
``DRAMATIQ_HEARTBEAT_TIMEOUT_MS`` plus Dramatiq's consumer restart delay
(a consumer whose connection broke reconnects after that delay, then
heartbeats at once) have passed since. Both times are Redis's, so no host's
clock enters the comparison. The marker rather than Redis's ``run_id`` or
uptime: a restart that kept its data (AOF) lost no message and needs no
wait, while a flush or an empty replica loses them without any restart. A
missing marker on the first pass after an upgrade costs one wait, nothing
else. Dramatiq's own maintenance (``dispatch.lua``) has nothing to requeue
after an empty restart (the in-flight sets are gone with the rest), so this
step is the only one deciding. Waiting jobs are sent again at once (after
``JOBS_RECONCILE_GRACE_S``): a worker skips a message whose job is not
waiting for it, so sending early costs nothing. A retrying job whose delayed
message is gone is sent when its next attempt is due, a scheduled one with
the delay it has left.

**Its last run** is kept in Redis (``<namespace>:__reconciler__``, a hash: Redis's time,
how long it took, ``ok`` or ``failed`` and what it did or why it failed), written at the
end of every pass by whichever scheduler ran it; the console shows it
(:func:`last_reconcile`). Redis, because the console already reads Redis and a pass
every 10 s should not write a row; when Redis is down the pass fails anyway and the
console says Redis is unreachable.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import dramatiq
from django.conf import settings
from django.db.models import Q
from dramatiq.worker import CONSUMER_RESTART_DELAY

from jobs.core.clock import database_now
from jobs.core.enums import RunHolder
from jobs.core.queues import queue_names
from jobs.core.redaction import redact_text
from jobs.dispatch.outcomes import deliver_unsettled
from jobs.dispatch.services import send_job
from jobs.models import Job, JobStatus
from jobs.state import transitions
from jobs.worker.pausing import restore_paused_queues

logger = logging.getLogger(__name__)

_BATCH = 1000

# Reads the marker of when this Redis's data began, setting it to Redis's
# clock if it is missing; returns {began, now, set by this call} in ms.
_DATA_EPOCH_LUA = """
local now = redis.call("time")
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local began = tonumber(redis.call("get", KEYS[1]))
if began then
    return {began, now_ms, 0}
end
redis.call("set", KEYS[1], now_ms)
return {now_ms, now_ms, 1}
"""


def epoch_key(namespace: str) -> str:
    return f"{namespace}:__epoch__"


@dataclass(frozen=True)
class DataEpoch:
    """When this Redis's data began, and Redis's time now (ms on Redis's clock)."""

    began_ms: int
    now_ms: int
    #: This call set the marker: the data began now (an empty restart, a flush, or the first pass ever).
    fresh: bool

    @property
    def age_s(self) -> float:
        return (self.now_ms - self.began_ms) / 1000


def data_epoch(client: Any, namespace: str) -> DataEpoch:
    began, now, fresh = client.eval(_DATA_EPOCH_LUA, 1, epoch_key(namespace))
    return DataEpoch(int(began), int(now), bool(fresh))


def dead_worker_hold_s() -> float:
    """How long after Redis's data began no worker is called dead: each has had time to heartbeat again."""
    return (settings.DRAMATIQ_HEARTBEAT_TIMEOUT_MS + CONSUMER_RESTART_DELAY) / 1000


@dataclass
class ReconcileReport:
    resent: int = 0
    due_sent: int = 0
    lost_requeued: int = 0
    #: Outcome hooks delivered again to domain rows that still waited for them.
    outcomes_redelivered: int = 0
    #: Paused queues put back into Redis from the database.
    pauses_restored: int = 0
    #: Redis's data is younger than ``dead_worker_hold_s``: no running job was judged.
    workers_not_judged: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.resent or self.due_sent or self.lost_requeued or self.outcomes_redelivered or self.pauses_restored
        )

    def summary(self) -> str:
        """What the pass did, in words: "nothing to fix", or the counts that were not zero."""
        parts = [
            f"{label} {count}"
            for label, count in (
                ("sent again", self.resent),
                ("sent when due", self.due_sent),
                ("requeued from dead workers", self.lost_requeued),
                ("outcomes delivered again", self.outcomes_redelivered),
                ("pauses restored", self.pauses_restored),
            )
            if count
        ]
        if self.workers_not_judged:
            parts.append("workers not judged yet (Redis's data is new)")
        return ", ".join(parts) or "nothing to fix"


# -- the last run, for the console -----------------------------------------------------
#: Longest failure text kept (a traceback's last line is enough; the scheduler's log has the rest).
_OUTCOME_MAX = 300

# Stamps the hash with Redis's clock: the console compares it with the same clock.
_RECORD_RUN_LUA = """
local now = redis.call("time")
redis.call("hset", KEYS[1], "at", now[1] .. "." .. string.format("%06d", tonumber(now[2])),
           "ok", ARGV[1], "outcome", ARGV[2], "duration_s", ARGV[3])
return 1
"""


def last_run_key(namespace: str) -> str:
    return f"{namespace}:__reconciler__"


@dataclass(frozen=True)
class ReconcileRun:
    """The last pass of any scheduler: when (Redis's time, seconds), whether it worked, what it did."""

    at: float
    ok: bool
    outcome: str
    duration_s: float


def _record_run(broker: Any, *, ok: bool, outcome: str, duration_s: float) -> None:
    try:
        broker.client.eval(
            _RECORD_RUN_LUA, 1, last_run_key(broker.namespace), "1" if ok else "0", outcome, f"{duration_s:.3f}"
        )
    except Exception:  # Redis down: the pass itself has failed or will; the log says so
        logger.warning("Could not record the reconciler's run in Redis", exc_info=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def last_reconcile(broker: Any) -> ReconcileRun | None:
    """The last recorded pass, or None if no scheduler ran one since Redis's data began."""
    fields = broker.client.hgetall(last_run_key(broker.namespace))
    if not fields:
        return None
    values = {_text(key): _text(value) for key, value in fields.items()}
    return ReconcileRun(
        at=float(values["at"]),
        ok=values["ok"] == "1",
        outcome=values["outcome"],
        duration_s=float(values["duration_s"]),
    )


def _stranded(queue: str, in_flight: set[str], cutoff: datetime) -> set[UUID]:
    """Waiting jobs whose message has sat in a worker's in-flight set since before ``cutoff``.

    A worker claims a message as soon as it fetches it (it fetches only for
    free threads), so a job still waiting long after is not being worked on.
    """
    if not in_flight:
        return set()
    candidates = Job.objects.filter(queue=queue, id__in=list(in_flight)[:_BATCH], updated_at__lt=cutoff).filter(
        Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RETRYING, next_attempt_at__lt=cutoff)
    )
    return set(candidates.values_list("id", flat=True))


def reconcile_once() -> ReconcileReport:
    """One pass (see the module's docstring), recorded in Redis as the last run for the console."""
    broker: Any = dramatiq.get_broker()
    started = time.monotonic()
    try:
        report = _reconcile(broker)
    except Exception as exc:
        reason = redact_text(f"{type(exc).__name__}: {exc}".strip())[:_OUTCOME_MAX]
        _record_run(broker, ok=False, outcome=f"failed: {reason}", duration_s=time.monotonic() - started)
        raise
    _record_run(broker, ok=True, outcome=report.summary(), duration_s=time.monotonic() - started)
    return report


def _reconcile(broker: Any) -> ReconcileReport:
    report = ReconcileReport()
    # Job rows carry the database's timestamps: compare them with its clock, not this host's.
    now = database_now()
    grace = now - timedelta(seconds=settings.JOBS_RECONCILE_GRACE_S)
    horizon = now + timedelta(seconds=settings.JOBS_DELAY_HORIZON_S)
    live_workers = broker.live_worker_ids()
    in_flight_by_queue = broker.in_flight_message_ids()
    # Read after the heartbeats: data lost before or while they were read shows here.
    epoch = data_epoch(broker.client, broker.namespace)
    hold_s = dead_worker_hold_s()
    if epoch.fresh:
        logger.warning(
            "Redis holds no data from before now (restarted empty, flushed, or a first run): "
            "waiting jobs are sent again; no worker is called dead for %.0f s",
            hold_s,
        )
    report.workers_not_judged = epoch.age_s < hold_s
    # Before any message is sent again: a paused queue's jobs must find it paused.
    report.pauses_restored = len(restore_paused_queues())

    for queue in queue_names():
        snapshot_at = database_now()
        in_redis = broker.message_ids_in_redis(queue)
        waiting = Job.objects.filter(queue=queue).filter(
            Q(status=JobStatus.QUEUED, updated_at__lt=grace)
            # A retry whose delayed message is gone waits here for its backoff to pass.
            | (
                Q(status=JobStatus.RETRYING, updated_at__lt=grace)
                & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            )
            | Q(status=JobStatus.SCHEDULED, scheduled_for__lte=horizon)
        )
        in_flight = in_flight_by_queue.get(queue, set())
        stranded = _stranded(queue, in_flight, now - timedelta(seconds=settings.JOBS_STRANDED_AFTER_S))
        for job in waiting.order_by("created_at")[:_BATCH]:
            if (str(job.id) in in_redis and job.id not in stranded) or job.updated_at >= snapshot_at:
                continue  # in Redis, or sent after the snapshot was taken
            if send_job(job):
                if job.status == JobStatus.SCHEDULED:
                    report.due_sent += 1
                else:
                    report.resent += 1
                    logger.warning("Job %s (%s) was not in Redis; sent it again", job.id, job.status)

        if report.workers_not_judged:
            continue  # the workers may not have heartbeated since Redis's data began
        # A parent waiting for its children has no worker (and no message) by design.
        running = Job.objects.filter(queue=queue, status=JobStatus.ACTIVE, updated_at__lt=grace).exclude(
            worker_id__in=[*live_workers, RunHolder.AWAITING_CHILDREN, RunHolder.FINALIZING]
        )
        for job in running[:_BATCH]:
            if str(job.id) in in_redis:
                continue  # Dramatiq's maintenance will redeliver it
            dead_worker = job.worker_id
            if transitions.requeue_lost(str(job.id), dead_worker):
                job.refresh_from_db()
                send_job(job)
                report.lost_requeued += 1
                logger.warning("Job %s lost its worker %s and its message; requeued", job.id, dead_worker)
    # Hooks are at least once: a worker may have died between a job's final
    # commit and its hook. The grace leaves the worker's own delivery time.
    report.outcomes_redelivered = deliver_unsettled(settings.JOBS_RECONCILE_GRACE_S)
    if report:
        logger.info("Reconciled: %s", report)
    return report
