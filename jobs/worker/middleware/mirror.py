"""The middleware that keeps each Job row true to its Dramatiq message.

One place decides every transition a worker makes: claim on start (or skip a
duplicate, or take over after a crash), completed, retrying with the next
attempt's time, failed with a readable reason, cancelled, requeued on
shutdown. docs/architecture.md has the table of events and statuses.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dramatiq
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.urls import get_resolver
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.middleware import Middleware, SkipMessage
from dramatiq.middleware.shutdown import Shutdown

from jobs.core.context import RunningJob, current_job, set_current_job
from jobs.core.enums import StopReason
from jobs.core.exceptions import JobCancelled, JobTimedOut, Reschedule, RunSuperseded, note_retry, readable_reason
from jobs.core.messages import ATTEMPT, JOB_OPTIONS, JOB_TYPE, MAX_ATTEMPTS, OWNER, PARENT, PRIORITY, SKIP_REASON
from jobs.core.queues import UnknownQueue, get_queue
from jobs.core.retry_policy import backoff_ms, is_permanent
from jobs.dispatch.outcomes import child_finished, deliver_outcome, has_outcome_hooks
from jobs.models import Job, JobStatus
from jobs.state import transitions
from jobs.state.batch import Claim
from jobs.state.writer import is_unreachable, state_writer
from jobs.worker.broker import AckGate, ConveyorRedisBroker
from jobs.worker.fanout import AwaitChildren, start_children

if TYPE_CHECKING:
    from jobs.state.writer import PendingWrite

logger = logging.getLogger(__name__)


def DELAY_HORIZON_S() -> float:  # noqa: N802 - reads like the setting it is

    return float(settings.JOBS_DELAY_HORIZON_S)


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    try:
        return json.loads(json.dumps(value, cls=DjangoJSONEncoder))
    except (TypeError, ValueError):
        return {"repr": repr(value)[:1000]}


def _durably(write: Callable[[], bool]) -> bool:
    """Run a worker's state write until the database takes it.

    The state writer retries a write for ``JOBS_STATE_WRITE_RETRY_S`` while
    the database is unreachable; past that, the write is tried again here:
    Dramatiq acknowledges the message when this hook returns, and a job
    whose run is over must not stay ``active`` under a live worker (the
    reconciler leaves those alone). A worker stopped meanwhile leaves the
    message unacknowledged, and it is redelivered.
    """
    while True:
        try:
            return write()
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            logger.error("The database is still unreachable; trying the job's state write again: %s", exc)
            time.sleep(1.0)


def _redis_id(message: MessageProxy) -> str:
    return str(message.options.get("redis_message_id") or message.message_id)


def describe_error(exc: BaseException, running: RunningJob | None) -> str:
    """The job's ``error``, which its owner reads: never a driver's text or a traceback.

    A ``JobError``'s text is meant for people and kept; anything else reads
    ``UNEXPECTED_ERROR`` (``jobs.core.exceptions.readable_reason``), and its
    type, text and traceback go to ``Job.traceback``, which only the admin shows.
    """
    if isinstance(exc, JobTimedOut) and running is not None:
        return StopReason.timed_out(running.time_limit_s)
    return readable_reason(exc)


class JobMirror(Middleware):
    """Writes every message's life into its Job row, with few conditional writes."""

    @property
    def actor_options(self) -> set[str]:
        # "throws": errors an actor declares permanent, as with Dramatiq's Retries.
        return {"throws", *JOB_OPTIONS}

    def __init__(self) -> None:
        self._worker_id: str | None = None
        # Claims started when their message was fetched, by Redis message id.
        self._ahead: dict[str, PendingWrite] = {}
        self._ahead_lock = threading.Lock()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Before the worker threads start: a message already waiting in Redis
        # must not be claimed before the writer (which batches claims and
        # publishes their events) is up.

        # A worker's threads mostly wait on Redis and PostgreSQL; with the
        # default 5 ms GIL switch interval each reply can wait that long for
        # the GIL while another thread computes, which set the pace here.
        sys.setswitchinterval(settings.WORKER_GIL_SWITCH_INTERVAL_S)
        # The first reverse() of a process imports every URLconf and view
        # (~0.17 s): paid here, not by the first job that links to a download.
        get_resolver().reverse_dict  # noqa: B018 - populates the resolver
        state_writer.start(threads=settings.JOBS_STATE_WRITER_THREADS)
        self.worker_id(broker)  # known before the consumers fetch
        if isinstance(broker, ConveyorRedisBroker):
            broker.claim_ahead = self

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:

        if isinstance(broker, ConveyorRedisBroker) and broker.claim_ahead is self:
            broker.claim_ahead = None
        state_writer.stop()

    def worker_id(self, broker: dramatiq.Broker) -> str:
        if self._worker_id is None:
            self._worker_id = str(getattr(broker, "broker_id", "local"))
        return self._worker_id

    # -- claim ahead (jobs.worker.broker.ClaimAhead) ------------------------------
    def fetched(self, message: MessageProxy) -> None:
        """Start the claim of a message the consumer just fetched; its worker thread waits for it.

        A worker thread used to wait out the claim's round trip to
        PostgreSQL before each job. Started here, the claim goes out with
        the state writer's next batch and commits while the message waits
        for a free thread (in a pool that holds more messages than threads),
        so the thread that takes the message finds it claimed.
        """

        claim = Claim(
            message.message_id, int(message.options.get(ATTEMPT, 0)), self._worker_id or "local", _redis_id(message)
        )
        pending = state_writer.submit(claim)
        with self._ahead_lock:
            self._ahead[_redis_id(message)] = pending

    def given_back(self, messages: Sequence[MessageProxy]) -> None:
        """Messages fetched but never run go back to Redis (a shutdown): undo their claims."""

        me = self._worker_id or "local"
        for message in messages:
            pending = self._take_ahead(message)
            try:
                if pending is not None and pending.wait():
                    attempt = int(message.options.get(ATTEMPT, 0)) + 1
                    transitions.requeue_after_shutdown(message.message_id, me, attempt, _redis_id(message))
            except Exception:
                # Left active with this worker's id: taken over once this worker is gone.
                logger.exception("Could not give back the claim of job %s", message.message_id)

    def _take_ahead(self, message: MessageProxy) -> PendingWrite | None:
        with self._ahead_lock:
            return self._ahead.pop(_redis_id(message), None)

    # -- start --------------------------------------------------------------
    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:

        job_id = message.message_id
        me = self.worker_id(broker)
        expected = int(message.options.get(ATTEMPT, 0))
        pending = self._take_ahead(message)
        claimed = (
            bool(pending.wait()) if pending is not None else transitions.claim(job_id, expected, me, _redis_id(message))
        )
        attempt = expected + 1
        if not claimed:
            row = Job.objects.filter(id=job_id).values("status", "worker_id", "attempts", "max_attempts").first()
            reason = self._why_not(broker, row, me)
            if reason == "take-over" and row is not None:
                if row["attempts"] >= row["max_attempts"]:
                    if transitions.mark_failed(
                        job_id,
                        f"the worker running it died during each of {row['attempts']} attempts",
                        worker_id=None,
                    ):
                        deliver_outcome(job_id)
                    reason = "worker died too often"
                elif transitions.take_over(job_id, row["worker_id"], me, row["attempts"]):
                    claimed, attempt = True, row["attempts"] + 1
                    logger.warning("Job %s redelivered after its worker %s died", job_id, row["worker_id"])
            if not claimed:
                message.options[SKIP_REASON] = reason
                logger.info("Skipping message %s: %s", job_id, reason)
                raise SkipMessage(reason)

        try:
            time_limit = get_queue(q_name(message.queue_name)).time_limit_s
        except UnknownQueue:
            time_limit = None
        set_current_job(
            RunningJob(
                job_id=job_id,
                job_type=str(message.options.get(JOB_TYPE, message.actor_name)),
                queue=q_name(message.queue_name),
                thread_id=threading.get_ident(),
                time_limit_s=time_limit,
                parent_id=message.options.get(PARENT),
                owner=str(message.options.get(OWNER, "")),
                priority=str(message.options.get(PRIORITY, "normal")),
                attempt=attempt,
                worker_id=me,
            )
        )

    @staticmethod
    def _why_not(broker: dramatiq.Broker, row: Mapping[str, Any] | None, me: str) -> str:
        if row is None:
            return "no job row for this message"
        status = row["status"]
        if status == JobStatus.ACTIVE:
            worker = row["worker_id"]
            alive = getattr(broker, "is_worker_alive", None)
            if worker != me and alive is not None and not alive(worker):
                return "take-over"
            return "a duplicate of a running job"
        if status == JobStatus.CANCELLED:
            return "the job was cancelled"
        if status in (JobStatus.COMPLETED, JobStatus.FAILED):
            return f"the job already {status}"
        return "a stale message for an earlier attempt"

    # -- finish -------------------------------------------------------------
    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:

        running = current_job()
        if running is None or running.job_id != message.message_id:
            return
        set_current_job(None)
        job_id, me, attempt = running.job_id, self.worker_id(broker), running.attempt
        # Every write below carries the run's fencing token (attempt, worker) and is
        # retried until the database answers: the message is acknowledged after this
        # hook, so only once the job's state is durable.
        if isinstance(exception, RunSuperseded):
            logger.warning("Job %s: attempt %d was taken over by another worker; this run stops", job_id, attempt)
            return

        if isinstance(result, AwaitChildren) and exception is None:
            if _durably(
                lambda: transitions.await_children(
                    job_id, me, result.data["fanout"]["low"], result.data, attempt=attempt, children=result.jobs
                )
            ):
                if result.child_ids:
                    start_children(result)
                else:
                    child_finished(job_id)  # nothing to wait for: finish through the type's hook now
            return
        if exception is None:
            if running.parent_id or has_outcome_hooks(running.job_type):
                # The parent and the domain hear of it only once it is durable;
                # the message is acknowledged after them.
                if _durably(
                    lambda: transitions.mark_completed(
                        job_id, me, _jsonable(result), running.pending_progress, attempt=attempt
                    )
                ):
                    self._settled(running)
                return
            # The thread moves on at once; the ack to Redis waits for the commit.
            gate = AckGate.hold(job_id)
            transitions.mark_completed_later(
                job_id, me, _jsonable(result), running.pending_progress, attempt=attempt, on_committed=gate.open
            )
            return
        if isinstance(exception, JobCancelled):
            reason = running.stop_reason or StopReason.CANCELLED_WHILE_RUNNING
            if _durably(lambda: transitions.mark_cancelled(job_id, reason, worker_id=me, attempt=attempt)):
                self._settled(running)
            return
        if isinstance(exception, Reschedule):
            delay_s = exception.delay_s
            reason = exception.reason
            redis_id = _redis_id(message)
            rescheduled = _durably(
                lambda: transitions.reschedule(job_id, me, delay_s, reason, attempt=attempt, message_id=redis_id)
            )
            if rescheduled and (delay_s <= DELAY_HORIZON_S()):
                # Further ahead than the horizon, the reconciler sends it when due.
                # No delay: straight back to its owner's fair bucket, not through the delay queue.
                self._send_again(broker, message, attempt=attempt - 1, delay=int(delay_s * 1000) or None)
            return
        if isinstance(exception, Shutdown):
            if _durably(lambda: transitions.requeue_after_shutdown(job_id, me, attempt, _redis_id(message))):
                # The attempt count this run started from (after a take-over it
                # is not the one the message carries).
                self._send_again(broker, message, attempt=attempt - 1, delay=None)
            return

        error = describe_error(exception, running)
        tb = "".join(traceback.format_exception(exception))
        max_attempts = int(message.options.get(MAX_ATTEMPTS, 1))
        actor = broker.actors.get(message.actor_name)
        throws = tuple(actor.options.get("throws") or ()) if actor else ()
        if is_permanent(exception, throws) or attempt >= max_attempts:
            if attempt >= max_attempts and not is_permanent(exception, throws) and max_attempts > 1:
                error = f"{error} (gave up after {attempt} attempts)"
            if _durably(lambda: transitions.mark_failed(job_id, error, tb, worker_id=me, attempt=attempt)):
                self._settled(running)
            return
        delay = backoff_ms(attempt)
        # Sentry's middleware reports the exception after this hook: a retry is not an error to it.
        note_retry(exception)
        if _durably(lambda: transitions.mark_retrying(job_id, me, error, tb, delay, attempt=attempt)):
            self._send_again(broker, message, attempt=attempt, delay=delay)

    @staticmethod
    def _settled(running: RunningJob) -> None:
        """The run's final state is durable: tell its parent, then the domain (``jobs.dispatch.outcomes``)."""
        if running.parent_id:
            try:
                child_finished(running.parent_id)
            except Exception:
                logger.exception("Could not update parent job %s", running.parent_id)
        if has_outcome_hooks(running.job_type):
            deliver_outcome(running.job_id)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        running = current_job()
        if running is not None and running.job_id == message.message_id:
            set_current_job(None)

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """A message Dramatiq dead-lettered: its actor is gone (or it was undecodable)."""

        self._take_ahead(message)  # claimed at fetch, never run: mark_failed below settles the row
        if message.actor_name not in broker.actors and transitions.mark_failed(
            message.message_id, f"actor {message.actor_name!r} no longer exists"
        ):
            deliver_outcome(message.message_id)

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        """Mirror messages sent straight through ``actor.send()``, outside the job service."""
        if message.options.get(JOB_TYPE) is not None:
            return

        Job.objects.get_or_create(
            id=message.message_id,
            defaults={
                "type": message.actor_name,
                "queue": q_name(message.queue_name),
                "actor": message.actor_name,
                "arguments": _jsonable({"args": list(message.args), "kwargs": message.kwargs}),
                "status": JobStatus.SCHEDULED if delay else JobStatus.QUEUED,
                "max_attempts": 1,
            },
        )

    @staticmethod
    def _send_again(broker: dramatiq.Broker, message: MessageProxy, *, attempt: int, delay: int | None) -> None:
        again = message._message.copy(queue_name=q_name(message.queue_name), options={ATTEMPT: attempt})
        again.options.pop("eta", None)
        try:
            if delay is None and hasattr(broker, "enqueue_first"):
                # Work under way (a run that made way, or was given back on shutdown): its owner's oldest.
                broker.enqueue_first(again)
            else:
                broker.enqueue(again, delay=delay)
        except Exception:
            # Redis is away: the reconciler sends it once Redis is back.
            logger.warning("Could not send job %s again; the reconciler will", message.message_id, exc_info=True)
