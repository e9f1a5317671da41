"""The delivery rows as a batch claims and settles them: exactly once per recipient.

For each recipient a batch claims the row (``pending → sending``, a
conditional UPDATE naming its run, ``claimed_by``) and, once the server has
answered, writes the outcome. ``OutcomeWriter`` folds one message's outcome
and the next one's claim into a single prepared statement (one round trip,
one commit), on a connection whose commits do not wait for the disk flush
while the batch runs (``AsynchronousCommits``).

**Claims hold the run's fencing token.** In a worker ``claimed_by`` is
``str(current_fence())``, "<job id>:<attempt>" (outside a run, a name the
caller gives). A claim is also fenced by the job: it succeeds only while the
run still holds its job (``_MARK_AND_CLAIM_FENCED``), so a run whose job was
taken over by another worker (it was frozen, or cut off from Redis past the
heartbeat timeout) claims nothing more and stops (``RunSuperseded``). The
outcome of a row already claimed is fenced by the row's own token instead
(``claimed_by = <token>``), not by the job: the email did go out, and only
the run that sent it can say so.

**Rows in doubt after a take-over** (the rule, decided with the platform's
fencing, issue 17):

* rows ``sending`` under the run's own token are its own: left by a run of
  the same token that ended without writing them (they are made ``pending``
  and sent again, as before);
* rows ``sending`` under an earlier attempt's token of the same job (or the
  bare job id that claims held before tokens) are **in doubt**: the earlier
  run may still be alive (thawed) with the message handed to the server.
  The take-over sends everything else first, then waits for them
  (``InDoubt``, polling every ``IN_DOUBT_POLL_S`` and reporting progress
  meanwhile): a live earlier run records them itself (or gives them back to
  ``pending``, when the server never had them, and the take-over sends them),
  then stops at its next claim or progress call. Only when the earlier run's
  worker does not heartbeat (``run_may_still_be_going``) **and**
  ``EMAIL_IN_DOUBT_GRACE_S`` has passed since the take-over first saw the row
  does it make the row ``pending`` and send it: a worker killed -9 mid-send
  costs at most one duplicate per connection, as before, and a worker frozen
  for longer than the heartbeat timeout, the rest of the batch and the grace
  together costs the same. An earlier run whose worker heartbeats for longer
  than the grace plus ``EMAIL_TIMEOUT`` without settling its row will not
  settle it: the row is left in doubt (the campaign's close marks it failed,
  "outcome unknown"), never sent twice.

``pending_recipients`` loads a batch's rows: those to send, its own rows
taken back, and the rows in doubt. ``release`` gives a claimed row back to
``pending`` (a 4xx, or a message that never reached the server).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections
from django.db import connection as db_connection
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import Campaign, Delivery, DeliveryStatus
from campaigns.template_context import recipient_fields
from jobs.public import Fence, fenced, run_may_still_be_going

try:
    import psycopg as _psycopg
except ImportError:  # SQLite, or psycopg2
    _psycopg = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)


def release(delivery_id: int, token: str, response: str = "", *, refund_attempt: bool = False) -> None:
    """Give a claimed row back to ``pending`` (it was not handed to the server, or 4xx)."""
    changes: dict[str, Any] = {
        "status": DeliveryStatus.PENDING,
        "claimed_by": "",
        "updated_at": timezone.now(),
    }
    if response:
        changes["smtp_response"] = response[:2000]
    if refund_attempt:
        changes["attempts"] = F("attempts") - 1
    Delivery.objects.filter(id=delivery_id, status=DeliveryStatus.SENDING, claimed_by=token).update(**changes)


_MARK_AND_CLAIM = """
UPDATE {table} SET
    status = CASE WHEN id = %(next)s THEN 'sending' ELSE %(status)s END,
    claimed_by = CASE WHEN id = %(next)s THEN %(token)s ELSE claimed_by END,
    attempts = CASE WHEN id = %(next)s THEN attempts + 1 ELSE attempts END,
    smtp_response = CASE WHEN id = %(last)s THEN %(response)s ELSE smtp_response END,
    sent_at = CASE WHEN id = %(last)s THEN COALESCE(%(sent_at)s, sent_at) ELSE sent_at END,
    updated_at = %(now)s
WHERE (id = %(next)s AND status = 'pending')
   OR (id = %(last)s AND status = 'sending' AND claimed_by = %(token)s)
RETURNING id
"""


# The same statement for a run (a worker): the claim of the next row also requires that
# the run still holds its job, in the same statement (no extra round trip on the hot path).
# The outcome of the last row is fenced by that row's own token only (see the module docstring).
#
# No lock on the job row (no FOR SHARE in the sub-select), on purpose. Under READ COMMITTED
# the sub-select sees the job row as of the statement's start, so a claim whose statement
# began before a take-over's UPDATE of the job row committed can still land just after it:
# at most one, since every later statement sees the take-over. That claim sends nothing
# twice: the take-over claims a row only from ``pending`` (its own claim of that row waits
# for this one's row lock, then finds it ``sending``), and at the end of its batch it looks
# again for rows ``sending`` under an earlier token and waits for them like any row in
# doubt (``InDoubt``); the stale run, which holds the claim, sends and records it. Should
# the late claim ever commit after that last look (a statement delayed for the whole rest
# of the batch), the row would close as "outcome unknown" though sent once: still no
# duplicate. Locking the job row ``FOR SHARE`` would close the window, but writes a lock on
# the job's row (a WAL record) with every message.
#
# The job row is looked up by its primary key alone and the token compared in the select
# list (no row: NULL, which is false): written as ``EXISTS (... AND status = 'active' ...)``
# the planner picked the (status, queue) index and read every active job.
_MARK_AND_CLAIM_FENCED = """
UPDATE {table} SET
    status = CASE WHEN id = %(next)s THEN 'sending' ELSE %(status)s END,
    claimed_by = CASE WHEN id = %(next)s THEN %(token)s ELSE claimed_by END,
    attempts = CASE WHEN id = %(next)s THEN attempts + 1 ELSE attempts END,
    smtp_response = CASE WHEN id = %(last)s THEN %(response)s ELSE smtp_response END,
    sent_at = CASE WHEN id = %(last)s THEN COALESCE(%(sent_at)s, sent_at) ELSE sent_at END,
    updated_at = %(now)s
WHERE (id = %(next)s AND status = 'pending' AND (
        SELECT job.status = 'active' AND job.attempts = %(attempt)s AND job.worker_id = %(worker)s
        FROM {jobs} AS job WHERE job.id = %(job)s))
   OR (id = %(last)s AND status = 'sending' AND claimed_by = %(token)s)
RETURNING id
"""


def _claim(delivery_id: int, token: str) -> bool:
    return bool(
        Delivery.objects.filter(id=delivery_id, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.SENDING, claimed_by=token, attempts=F("attempts") + 1, updated_at=timezone.now()
        )
    )


class _MarkAndClaim:
    """The per-message UPDATE on this thread's connection, set up once per batch.

    It writes the last row's final outcome and the next row's claim in one
    statement (one round trip, one commit); either id may be None, and then
    only the other row is written (``id = NULL`` matches nothing).

    On PostgreSQL (psycopg 3) it runs on a server-binding cursor of the same
    connection (same transaction state, same autocommit), kept for the batch:
    Django's psycopg 3 cursors quote every parameter into the SQL text in
    Python, and looking the connection up through ``django.db.connection``
    (a thread-local proxy) on every attribute cost more CPU per message than
    the statement itself. Django turns prepared statements off by default
    (``prepare_threshold=None``, for transaction poolers) and that choice is
    kept: with ``OPTIONS["prepare_threshold"]`` set, this statement is
    prepared on its first run. Errors still come out as Django's database
    exceptions.
    """

    def __init__(self, fence: Fence | None = None) -> None:
        self.connection = connections[DEFAULT_DB_ALIAS]
        quote = self.connection.ops.quote_name
        table = quote(Delivery._meta.db_table)
        #: Fenced in the statement itself on PostgreSQL; elsewhere ``OutcomeWriter`` claims in ``fenced()``.
        self.fenced_in_sql = fence is not None and self.connection.vendor == "postgresql"
        self.fence_params: dict[str, Any] = {}
        if fence is not None and self.fenced_in_sql:
            job_field = Campaign._meta.get_field("job")
            jobs = quote(job_field.related_model._meta.db_table)  # type: ignore[union-attr]
            self.sql = _MARK_AND_CLAIM_FENCED.format(table=table, jobs=jobs)
            self.fence_params = {"job": uuid.UUID(fence.job_id), "attempt": fence.attempt, "worker": fence.worker_id}
        else:
            self.sql = _MARK_AND_CLAIM.format(table=table)
        self._raw: Any = None
        self._cursor: Any = None

    def __call__(
        self, last_id: int | None, status: str, response: str, sent_at: Any, next_id: int | None, token: str
    ) -> bool:
        params = {
            "next": next_id,
            "last": last_id,
            "status": status,
            "token": token,
            "response": response[:2000],
            "sent_at": sent_at,
            "now": timezone.now(),
            **self.fence_params,
        }
        return next_id in {row[0] for row in self._execute(params)}

    def _execute(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        connection = self.connection
        connection.ensure_connection()
        raw = connection.connection
        if _psycopg is None or not isinstance(raw, _psycopg.Connection):
            with connection.cursor() as django_cursor:
                django_cursor.execute(self.sql, params)
                return list(django_cursor.fetchall())
        if raw is not self._raw:  # the first statement, or Django reconnected meanwhile
            self.close()
            self._raw, self._cursor = raw, _psycopg.Cursor(raw)
        connection.validate_no_broken_transaction()
        with connection.wrap_database_errors:
            # prepare=True has an effect only when the connection allows prepared statements.
            self._cursor.execute(self.sql, params, prepare=True)
            return self._cursor.fetchall()  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
        self._raw = self._cursor = None


class OutcomeWriter:
    """Writes each message's outcome in the same transaction as the next message's claim.

    One commit per message instead of two, and still at most one row of the
    batch in ``sending`` at any moment: the previous row leaves ``sending``
    in the very commit that puts the next one there.
    """

    def __init__(self, token: str, fence: Fence | None = None) -> None:
        self.token = token
        self.fence = fence
        self._last: tuple[int, str, str, dict[str, Any]] | None = None
        self._mark_and_claim = _MarkAndClaim(fence)

    def record(self, delivery_id: int, status: str, response: str, **extra: Any) -> None:
        self._last = (delivery_id, status, response, extra)

    def _write_last(self) -> None:
        if self._last is None:
            return
        delivery_id, status, response, extra = self._last
        self._last = None
        if status == DeliveryStatus.PENDING:
            release(delivery_id, self.token, response)
        else:
            # The same statement as a claim, naming no row to claim.
            self._mark_and_claim(delivery_id, status, response, extra.get("sent_at"), None, self.token)

    def claim_after_last(self, delivery_id: int) -> bool:
        """Write the last outcome and claim this row (``pending → sending``): one statement, one commit.

        False when another batch holds the row or it is final. Raises
        ``RunSuperseded`` when the claim was refused because this run no
        longer holds its job (the last outcome is written all the same).
        """
        released = self._last is not None and self._last[1] == DeliveryStatus.PENDING
        if released or (self.fence is not None and not self._mark_and_claim.fenced_in_sql):
            # A 4xx or a dropped connection (rare), or a database without the fenced statement:
            # the last outcome first, under the row's own token (so even a run that lost its job
            # settles what it holds; the take-over sends a row given back), then the claim.
            self._write_last()
            with fenced():
                claimed = _claim(delivery_id, self.token)
        else:
            claimed = self._write_last_and_claim(delivery_id)
        if not claimed and self.fence is not None and self._mark_and_claim.fenced_in_sql:
            # Held by another batch, final, or refused by the fence: only the fence raises.
            with fenced():
                pass
        return claimed

    def _write_last_and_claim(self, delivery_id: int) -> bool:
        if self._last is None:  # the batch's first claim, or the first after a flush: nothing to mark
            return self._mark_and_claim(None, "", "", None, delivery_id, self.token)
        last_id, status, response, extra = self._last
        self._last = None
        return self._mark_and_claim(last_id, status, response, extra.get("sent_at"), delivery_id, self.token)

    def flush(self) -> None:
        self._write_last()

    def close(self) -> None:
        self._mark_and_claim.close()


class AsynchronousCommits:
    """This thread's status writes commit without waiting for PostgreSQL's disk flush, until restored.

    A commit is visible to every session, and kept by the server, before it is
    flushed: a worker killed after its write cannot undo it, so the guarantee
    against worker crashes is the same. The flush (~3 ms here, a third of a
    message's time) is what a crash of PostgreSQL itself could lose: the last
    ``3 x wal_writer_delay`` (0.6 s by default) of status writes, whose
    messages would be sent again. ``EMAIL_DELIVERY_ASYNC_COMMIT=false`` waits
    for every flush instead.
    """

    def __init__(self) -> None:
        self.active = False

    def begin(self) -> None:
        if settings.EMAIL_DELIVERY_ASYNC_COMMIT and db_connection.vendor == "postgresql":
            with db_connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit = off")
            self.active = True

    def restore(self) -> None:
        """Back to the server's default: the thread's connection serves other jobs next."""
        if not self.active:
            return
        try:
            with db_connection.cursor() as cursor:
                cursor.execute("RESET synchronous_commit")
        except Exception:
            logger.warning("Could not reset synchronous_commit; closing the connection", exc_info=True)
            db_connection.close()


@dataclass(slots=True)
class Recipient:
    """What sending needs of a pending delivery row (no model instance: a batch loads many)."""

    pk: int
    email: str
    attempts: int
    #: The delivery's own stored context (``Delivery.context``), plain data.
    context: dict[str, Any]
    #: The user's display fields (``template_context.recipient_fields``).
    fields: dict[str, str]


def _display_fields(user_ids: set[int]) -> dict[int, tuple[str, str, str]]:
    """Per user id: first name, last name and username, read as plain values (no model instance)."""
    user_model = get_user_model()
    names = {field.name for field in user_model._meta.get_fields()}
    username = user_model.USERNAME_FIELD
    columns = [column for column in ("first_name", "last_name") if column in names] + [username]
    fields: dict[int, tuple[str, str, str]] = {}
    for pk, *values in user_model._default_manager.filter(pk__in=user_ids).values_list("pk", *columns):
        row = dict(zip(columns, values, strict=True))
        fields[pk] = (str(row.get("first_name") or ""), str(row.get("last_name") or ""), str(row[username] or ""))
    return fields


def earlier_run_tokens(job_id: str) -> Q:
    """Rows claimed by an earlier run of the job ``job_id``: its tokens "<job id>:<n>", or the bare id of old claims."""
    return Q(claimed_by=job_id) | Q(claimed_by__startswith=f"{job_id}:")


@dataclass
class BatchRows:
    """A batch's rows as a run finds them when it starts."""

    #: The rows to send, in id order.
    recipients: list[Recipient]
    #: Rows this run's own token had left ``sending``, made ``pending`` again (in ``recipients``).
    reclaimed: int
    #: Rows ``sending`` under an earlier run's token of this job, id -> that token (not in ``recipients``).
    in_doubt: dict[int, str]


def pending_recipients(delivery_ids: list[int], token: str, *, job_id: str | None = None) -> BatchRows:
    """The batch's rows to send in id order, each with its user's display fields; see the module docstring.

    Those are the ``pending`` rows, and the rows this same token left
    ``sending`` (made ``pending`` again, and counted). With ``job_id`` (a
    run), the rows an earlier run of the job left ``sending`` come back in
    ``in_doubt``. One query in the usual case, where there are none of the
    latter two, and one for the users' names.
    """
    claimed = Q(claimed_by=token)
    if job_id is not None:
        claimed |= earlier_run_tokens(job_id)
    rows = list(
        Delivery.objects.filter(
            Q(status=DeliveryStatus.PENDING) | Q(claimed, status=DeliveryStatus.SENDING),
            id__in=delivery_ids,
        )
        .order_by("id")
        .values_list("id", "email", "attempts", "context", "user_id", "status", "claimed_by")
    )
    in_doubt = {row[0]: row[6] for row in rows if row[5] == DeliveryStatus.SENDING and row[6] != token}
    interrupted = [row[0] for row in rows if row[5] == DeliveryStatus.SENDING and row[6] == token]
    reclaimed = 0
    if interrupted:
        reclaimed = Delivery.objects.filter(id__in=interrupted, status=DeliveryStatus.SENDING, claimed_by=token).update(
            status=DeliveryStatus.PENDING, claimed_by="", updated_at=timezone.now()
        )
    rows = [row for row in rows if row[0] not in in_doubt]
    users = _display_fields({row[4] for row in rows})
    # A user deleted meanwhile takes its delivery with it (cascade): such a row is skipped.
    recipients = []
    for pk, email, attempts, context, user_id, *_ in rows:
        if user_id not in users:
            continue
        first, last, username = users[user_id]
        fields = recipient_fields(first_name=first, last_name=last, email=email, username=username)
        recipients.append(Recipient(pk, email, attempts, context or {}, fields))
    return BatchRows(recipients, reclaimed, in_doubt)


#: How often a take-over looks at the rows in doubt while it waits for them.
IN_DOUBT_POLL_S = 0.5


@dataclass
class InDoubt:
    """A take-over's wait for the rows an earlier run of its job left ``sending``; see the module docstring.

    ``next_to_send()`` returns once there is something to send (rows given
    back by the earlier run, or made ``pending`` here once it is given up)
    or nothing left to wait for. Every row it returns is ``pending``: the
    caller claims it as any other.
    """

    job_id: str
    token: str
    delivery_ids: list[int]
    #: Row id -> the token that holds it ``sending``.
    rows: dict[int, str]
    #: Called on every poll (progress, the connection slot's lease); may raise to stop the wait.
    on_wait: Callable[[int], None] = lambda waiting: None
    #: Row id -> when this run first saw it in doubt (monotonic).
    seen_at: dict[int, float] = field(default_factory=dict)
    #: Earlier token -> since when its worker has heartbeated without a break (monotonic).
    alive_since: dict[str, float] = field(default_factory=dict)
    #: Rows left in doubt for good: their run's worker is alive and did not settle them.
    abandoned: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        now = time.monotonic()
        self.seen_at = {pk: now for pk in self.rows}

    def next_to_send(self) -> list[int]:
        """Wait until some rows in doubt can be sent (their ids), or none is left (an empty list)."""
        while True:
            self._look()
            if not self.rows:
                return []
            sendable = self._sendable()
            if sendable:
                return sendable
            if not self.rows:
                return []
            self.on_wait(len(self.rows))
            time.sleep(IN_DOUBT_POLL_S)

    def _look(self) -> None:
        """Settle what the rows say now; note rows claimed late by an earlier run (see ``_MARK_AND_CLAIM_FENCED``)."""
        now = time.monotonic()
        current = Delivery.objects.filter(
            Q(id__in=list(self.rows)) | Q(earlier_run_tokens(self.job_id), status=DeliveryStatus.SENDING),
            id__in=self.delivery_ids,
        ).values_list("id", "status", "claimed_by")
        seen: dict[int, tuple[str, str]] = {pk: (status, claimed_by) for pk, status, claimed_by in current}
        for pk, (status, claimed_by) in seen.items():
            if status == DeliveryStatus.SENDING and claimed_by != self.token and pk not in self.abandoned:
                if pk not in self.rows:
                    self.seen_at[pk] = now
                self.rows[pk] = claimed_by
            elif status == DeliveryStatus.PENDING and pk in self.rows:
                self.rows[pk] = ""  # given back by the earlier run: the server never had it
            else:
                self.rows.pop(pk, None)  # settled by the earlier run (or claimed by this one)
        for pk in list(self.rows):
            if pk not in seen:
                self.rows.pop(pk)  # gone (its user was deleted)

    def _sendable(self) -> list[int]:
        """Rows given back by their earlier run, and rows now given up on (made ``pending`` here)."""
        given_back = [pk for pk in self.rows if self.rows[pk] == ""]
        now = time.monotonic()
        grace = float(settings.EMAIL_IN_DOUBT_GRACE_S)
        reset: list[int] = []
        for token in sorted(set(self.rows.values()) - {""}):
            held = [pk for pk, holder in self.rows.items() if holder == token]
            if run_may_still_be_going(token):
                since = self.alive_since.setdefault(token, now)
                if now - since > grace + float(settings.EMAIL_TIMEOUT):
                    logger.warning(
                        "Run %s heartbeats but left %d delivery row(s) sending for %.0f s: left in doubt, not resent",
                        token,
                        len(held),
                        now - since,
                    )
                    self.abandoned.update(held)
                    for pk in held:
                        self.rows.pop(pk)
                continue
            self.alive_since.pop(token, None)
            due = [pk for pk in held if now - self.seen_at[pk] >= grace]
            if not due:
                continue
            with fenced():  # this run's own write: refused if it lost its job meanwhile
                Delivery.objects.filter(id__in=due, status=DeliveryStatus.SENDING, claimed_by=token).update(
                    status=DeliveryStatus.PENDING, claimed_by="", updated_at=timezone.now()
                )
            logger.warning(
                "Run %s is gone (no heartbeat for %.0f s and more): %d delivery row(s) it held are sent again",
                token,
                grace,
                len(due),
            )
            reset.extend(due)
        for pk in given_back + reset:
            self.rows.pop(pk, None)
        return sorted(given_back + reset)
