"""The delivery rows as a batch claims and settles them: exactly once per recipient.

For each recipient a batch claims the row (``pending → sending``, a
conditional UPDATE naming its job, ``claimed_by``) and, once the server has
answered, writes the outcome. ``OutcomeWriter`` folds one message's outcome
and the next one's claim into a single prepared statement (one round trip,
one commit), on a connection whose commits do not wait for the disk flush
while the batch runs (``AsynchronousCommits``).

``pending_recipients`` loads a batch's rows, and takes back the rows that the
same job left ``sending`` when its worker died (they are sent again: at most
one duplicate per connection). ``release`` gives a claimed row back to
``pending`` (a 4xx, or a message that never reached the server).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db import connection as db_connection
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import Delivery, DeliveryStatus
from campaigns.template_context import recipient_fields

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

    def __init__(self) -> None:
        self.connection = connections[DEFAULT_DB_ALIAS]
        self.sql = _MARK_AND_CLAIM.format(table=self.connection.ops.quote_name(Delivery._meta.db_table))
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

    def __init__(self, token: str) -> None:
        self.token = token
        self._last: tuple[int, str, str, dict[str, Any]] | None = None
        self._mark_and_claim = _MarkAndClaim()

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
        """Write the last outcome and claim this row (``pending → sending``): one statement, one commit."""
        if self._last is not None and self._last[1] == DeliveryStatus.PENDING:
            with transaction.atomic():
                self._write_last()
                return _claim(delivery_id, self.token)
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


def pending_recipients(delivery_ids: list[int], token: str) -> tuple[list[Recipient], int]:
    """The batch's rows to send in id order, each with its user's display fields.

    Those are the ``pending`` rows, and the rows this same job left
    ``sending`` when it died (a redelivery: they are made ``pending`` again,
    and their number is returned). One query in the usual case, where there
    are none of the latter, and one for the users' names.
    """
    rows = list(
        Delivery.objects.filter(
            Q(status=DeliveryStatus.PENDING) | Q(status=DeliveryStatus.SENDING, claimed_by=token),
            id__in=delivery_ids,
        )
        .order_by("id")
        .values_list("id", "email", "attempts", "context", "user_id", "status")
    )
    interrupted = [row[0] for row in rows if row[5] == DeliveryStatus.SENDING]
    reclaimed = 0
    if interrupted:
        reclaimed = Delivery.objects.filter(id__in=interrupted, status=DeliveryStatus.SENDING, claimed_by=token).update(
            status=DeliveryStatus.PENDING, claimed_by="", updated_at=timezone.now()
        )
    users = _display_fields({row[4] for row in rows})
    # A user deleted meanwhile takes its delivery with it (cascade): such a row is skipped.
    recipients = []
    for pk, email, attempts, context, user_id, _ in rows:
        if user_id not in users:
            continue
        first, last, username = users[user_id]
        fields = recipient_fields(first_name=first, last_name=last, email=email, username=username)
        recipients.append(Recipient(pk, email, attempts, context or {}, fields))
    return recipients, reclaimed
