"""Sending one batch of deliveries over one reused SMTP connection, exactly once per recipient.

For each recipient: take a rate-limit permit, claim the row
(``pending → sending``, a conditional UPDATE naming this batch's job), hand
the message to the server, and write the outcome right away. So:

* a recipient already ``sent``/``bounced``/``failed`` is never sent again,
  whoever redelivers the batch;
* two batches holding the same recipient cannot both send it (only one
  claim succeeds);
* the one unavoidable window: the server accepted a message and the worker
  died before writing ``sent``. The row stays ``sending`` under this job's
  id. When the same job is redelivered it sends those rows again, so a crash
  costs at most one duplicate per connection (a batch has at most one
  message in flight). Rows left ``sending`` by a job that never comes back
  are marked ``failed`` ("outcome unknown") when the campaign closes,
  never sent twice.

Outcomes per recipient: 2xx → sent; 5xx to RCPT → bounced; an invalid
address, a 5xx to DATA or a template that fails → failed; 4xx → pending
again, tried later (the batch reschedules itself, without using a job
retry) until ``EMAIL_MAX_ATTEMPTS_PER_RECIPIENT``; a dropped connection →
reconnect and try that recipient again. The sender refused, authentication
failing or no server at all → ``SmtpUnavailable``: the job's own retries.

On Django's SMTP backend each message is written as bytes
(``rendering.RawComposer``) straight onto the backend's smtplib connection;
any other backend (locmem in tests, console) gets Django's message object.
"""

from __future__ import annotations

import functools
import logging
import random
import smtplib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.core.mail.message import sanitize_address
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db import connection as db_connection
from django.db.models import F, Q
from django.utils import timezone

from campaigns.exceptions import CampaignNotFound, SendingDeferred, SmtpUnavailable
from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from campaigns.ratelimit import ConnectionSlots, SendRateLimiter
from campaigns.rendering import (
    PLAIN_ADDRESS,
    CompiledTemplate,
    RawComposer,
    TemplateInvalid,
    compile_template,
    render_parts,
)

try:
    import psycopg as _psycopg
except ImportError:  # SQLite, or psycopg2
    _psycopg = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: Header naming the delivery, so a bounce or a duplicate can be traced to its row.
DELIVERY_HEADER = "X-Conveyor-Delivery"

ProgressReport = Callable[[dict[str, int], int, int], None]


@dataclass
class BatchOutcome:
    sent: int = 0
    bounced: int = 0
    failed: int = 0
    #: Recipients that answered 4xx and will be tried again.
    retry_later: int = 0
    #: Recipients skipped: already final, or held by another batch.
    skipped: int = 0
    #: Rows this job had left ``sending`` when it died, sent again.
    reclaimed: int = 0
    #: Recipients left ``pending`` because the campaign was cancelled meanwhile.
    not_sent: int = 0
    reconnects: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SmtpResult:
    """What the server answered for one recipient."""

    kind: str  # sent | bounced | failed | temporary | dropped
    response: str


class _Infrastructure(Exception):
    """The server refuses the batch as a whole (sender, auth): not a recipient's fault."""


def _answer(code: int, message: bytes | str) -> str:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return f"{code} {text}".strip()


@functools.lru_cache(maxsize=16)
def _sanitized_sender(address: str, encoding: str) -> str:
    return sanitize_address(address, encoding)


def _smtp_transaction(conn: smtplib.SMTP, sender: str, recipients: list[str], payload: bytes) -> str:
    """MAIL, RCPT, DATA for one message; returns the server's final answer.

    ``smtplib.sendmail`` throws the final answer away; the delivery keeps it.
    """
    conn.ehlo_or_helo_if_needed()
    options = ["BODY=8BITMIME"] if conn.has_extn("8bitmime") else []
    if any(not address.isascii() for address in [sender, *recipients]) and conn.has_extn("smtputf8"):
        options.append("SMTPUTF8")
        code, reply = conn.mail(sender, options)  # smtplib switches the command encoding
    else:
        code, reply = _command(conn, "mail", f"FROM:{_envelope(sender)}{''.join(' ' + o for o in options)}")
    if code != 250:
        _reset(conn)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    for address in recipients:
        code, reply = _command(conn, "rcpt", f"TO:{_envelope(address)}")
        if code not in (250, 251):
            _reset(conn)
            raise smtplib.SMTPRecipientsRefused({address: (code, reply)})
    code, reply = conn.data(payload)
    if code != 250:
        _reset(conn)
        raise smtplib.SMTPDataError(code, reply)
    return _answer(code, reply)


def _command(conn: smtplib.SMTP, name: str, argument: str) -> tuple[int, bytes]:
    conn.putcmd(name, argument)
    return conn.getreply()


@functools.lru_cache(maxsize=256)  # the sender's, above all
def _envelope(address: str) -> str:
    """``<address>``, as ``smtplib.quoteaddr`` writes it; without parsing it again when it is plain.

    ``quoteaddr`` runs the ``email`` package's address parser on every MAIL
    and RCPT, which cost a fifth of a message's CPU in a profile; addresses
    here are already sanitized, and a plain one comes out unchanged.
    """
    return f"<{address}>" if PLAIN_ADDRESS.fullmatch(address) else smtplib.quoteaddr(address)


def _reset(conn: smtplib.SMTP) -> None:
    try:
        conn.rset()
    except smtplib.SMTPServerDisconnected:
        pass


def _django_transaction(backend: Any, message: EmailMessage) -> str:
    conn = getattr(backend, "connection", None)
    if isinstance(conn, smtplib.SMTP):
        encoding = message.encoding or settings.DEFAULT_CHARSET
        sender = _sanitized_sender(message.from_email, encoding)
        recipients = [sanitize_address(address, encoding) for address in message.recipients()]
        return _smtp_transaction(conn, sender, recipients, message.message().as_bytes(linesep="\r\n"))
    # Another backend (locmem in unit tests, console): it only says yes or raises.
    backend.send_messages([message])
    return "accepted"


def deliver(backend: Any, message: EmailMessage) -> SmtpResult:
    """Hand one Django message to an open backend and classify what happened."""
    return _classified(functools.partial(_django_transaction, backend, message))


def _raw_transaction(conn: smtplib.SMTP, composer: RawComposer, parts: tuple[str, str, str], to: str, tag: str) -> str:
    recipient = composer.recipient(to)  # ValueError: not an address
    subject, text, html = parts
    payload = composer.compose(subject, text, html, to, recipient, {DELIVERY_HEADER: tag})
    if payload is None:  # a charset or a line length the composer leaves to Django
        message = _django_message(parts, to, tag)
        payload = message.message().as_bytes(linesep="\r\n")
    return _smtp_transaction(conn, composer.sender, [recipient], payload)


def deliver_raw(
    conn: smtplib.SMTP, composer: RawComposer, parts: tuple[str, str, str], to: str, tag: str
) -> SmtpResult:
    """Compose one message's bytes and hand them to an open smtplib connection; classify what happened."""
    return _classified(functools.partial(_raw_transaction, conn, composer, parts, to, tag))


def _django_message(parts: tuple[str, str, str], to: str, tag: str) -> EmailMessage:
    subject, text, html = parts
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to], headers={DELIVERY_HEADER: tag})
    if html:
        message.attach_alternative(html, "text/html")
    return message


def _classified(transaction_: Callable[[], str]) -> SmtpResult:
    """Run one SMTP transaction and sort its outcome into sent/bounced/failed/temporary/dropped."""
    try:
        return SmtpResult("sent", transaction_())
    except ValueError as exc:  # sanitize_address: not an email address
        return SmtpResult("failed", f"invalid address: {exc}")
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()))
        kind = "bounced" if code >= 500 else "temporary"
        return SmtpResult(kind, _answer(code, reply))
    except smtplib.SMTPSenderRefused as exc:
        raise _Infrastructure(f"sender refused: {_answer(exc.smtp_code, exc.smtp_error)}") from exc
    except smtplib.SMTPServerDisconnected as exc:
        return SmtpResult("dropped", f"connection dropped: {exc}")
    except smtplib.SMTPResponseException as exc:  # SMTPDataError and others with a code
        if exc.smtp_code == 421:  # the server is closing the connection
            return SmtpResult("dropped", _answer(exc.smtp_code, exc.smtp_error))
        kind = "failed" if exc.smtp_code >= 500 else "temporary"
        return SmtpResult(kind, _answer(exc.smtp_code, exc.smtp_error))
    except OSError as exc:  # socket timeouts and resets included
        return SmtpResult("dropped", f"connection lost: {exc}")


class _Connection:
    """The batch's one SMTP connection: opened once, reopened after a drop."""

    def __init__(self) -> None:
        self.backend: Any = get_connection(fail_silently=False)
        self.reconnects = 0

    @property
    def smtp(self) -> smtplib.SMTP | None:
        """The open smtplib connection, when the backend is Django's SMTP one."""
        conn = getattr(self.backend, "connection", None)
        return conn if isinstance(conn, smtplib.SMTP) else None

    def open(self) -> None:
        try:
            self.backend.open()
        except (OSError, smtplib.SMTPException) as exc:
            raise SmtpUnavailable(f"cannot open an SMTP connection: {exc}") from exc

    def reopen(self) -> None:
        self.close()
        self.reconnects += 1
        self.open()

    def close(self) -> None:
        try:
            self.backend.close()
        except Exception:
            logger.debug("Closing the SMTP connection failed", exc_info=True)
            if isinstance(self.backend, SmtpBackend):
                self.backend.connection = None


def _release(delivery_id: int, token: str, response: str = "", *, refund_attempt: bool = False) -> None:
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


class _Permits:
    """Rate-limit permits, one per message; a short wait in the thread, a long one reschedules."""

    def __init__(self) -> None:
        self.limiter = SendRateLimiter()
        self.max_wait_s = float(settings.EMAIL_RATE_LIMIT_MAX_WAIT_S)

    def take_one(self) -> None:
        if not self.limiter.enabled:
            return
        while True:
            grant = self.limiter.acquire(1)
            if grant.permits:
                return
            if grant.retry_after_s > self.max_wait_s:
                delay = grant.retry_after_s + random.uniform(0, min(5.0, grant.retry_after_s / 10))
                raise SendingDeferred(
                    delay,
                    f"Waiting for the rate limit ({self.limiter.limit} per {self.limiter.window_s:g} s)",
                )
            time.sleep(grant.retry_after_s)


class _Slot:
    """This batch's lease on one of the shared SMTP connection slots."""

    def __init__(self) -> None:
        self.slots = ConnectionSlots()
        self.lease = self.slots.new_lease()
        self.renewed = 0.0

    def take(self) -> None:
        # A slot frees up whenever another batch ends: worth a short wait in the thread.
        deadline = time.monotonic() + float(settings.EMAIL_RATE_LIMIT_MAX_WAIT_S)
        while not self.slots.hold(self.lease):
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise SendingDeferred(
                settings.EMAIL_CONNECTION_RETRY_S,
                f"Waiting for an SMTP connection slot ({self.slots.slots} in use)",
            )
        self.renewed = time.monotonic()

    def renew(self) -> None:
        if time.monotonic() - self.renewed > self.slots.ttl_s / 3:
            self.slots.hold(self.lease)
            self.renewed = time.monotonic()

    def release(self) -> None:
        try:
            self.slots.release(self.lease)
        except Exception:
            logger.warning("Could not release SMTP slot %s; it expires on its own", self.lease, exc_info=True)


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


class _OutcomeWriter:
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
            _release(delivery_id, self.token, response)
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


class _AsynchronousCommits:
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


@functools.lru_cache(maxsize=32)
def _compiled(subject: str, body_text: str, body_html: str) -> CompiledTemplate:
    """The compiled template, shared by the batches of a campaign that run in this process.

    Compiled templates are immutable and safe to render from several threads
    (each render has its own Context); the key is the sources, so an edited
    template compiles afresh.
    """
    return compile_template(subject, body_text, body_html)


@dataclass(slots=True)
class _Recipient:
    """What sending needs of a pending delivery row (no model instance: a batch loads many)."""

    pk: int
    email: str
    attempts: int
    context: dict[str, Any]
    user: Any


def _pending_recipients(delivery_ids: list[int], token: str) -> tuple[list[_Recipient], int]:
    """The batch's rows to send in id order, each with its user (a full model instance for the template).

    Those are the ``pending`` rows, and the rows this same job left
    ``sending`` when it died (a redelivery: they are made ``pending`` again,
    and their number is returned). One query in the usual case, where there
    are none of the latter.
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
    users = get_user_model()._default_manager.in_bulk({row[4] for row in rows})
    # A user deleted meanwhile takes its delivery with it (cascade): such a row is skipped.
    recipients = [
        _Recipient(pk, email, attempts, context or {}, users[user_id])
        for pk, email, attempts, context, user_id, _ in rows
        if user_id in users
    ]
    return recipients, reclaimed


class _ReportClock:
    """When this process last wrote a campaign's progress: a batch's closing report waits its turn.

    Every batch used to recount its campaign and write the parent job's row
    as it ended: five statements per 50 messages, all at the same moment as
    the other batches'. Now at most one per campaign per
    ``EMAIL_PROGRESS_INTERVAL_S`` in each process; the campaign's last word
    is its closing recount (``services.finish_campaign``).
    """

    def __init__(self) -> None:
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()

    def due(self, campaign_id: int, interval_s: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(campaign_id, -interval_s) < interval_s:
                return False
            if len(self._last) > 1000:  # campaigns long over
                self._last.clear()
            self._last[campaign_id] = now
            return True


_report_clock = _ReportClock()


def send_batch(
    campaign_id: int,
    delivery_ids: list[int],
    *,
    token: str,
    report: ProgressReport | None = None,
) -> BatchOutcome:
    """Send the batch's pending deliveries over one connection; see the module docstring.

    ``token`` names the claimant: the batch job's id in a worker, so that a
    redelivery of the same job recognises the rows its dead run left ``sending``.
    """
    campaign = Campaign.objects.select_related("template").filter(id=campaign_id).first()
    if campaign is None:
        raise CampaignNotFound(f"campaign {campaign_id} does not exist")
    outcome = BatchOutcome()
    recipients, outcome.reclaimed = _pending_recipients(delivery_ids, token)
    if outcome.reclaimed:
        logger.warning(
            "Batch %s was interrupted while sending: %d message(s) in doubt are sent again",
            token,
            outcome.reclaimed,
        )
    todo = deque(recipients)
    outcome.skipped = len(delivery_ids) - len(todo)
    if todo and campaign.status == CampaignStatus.CANCELLED:
        outcome.not_sent = len(todo)
        return outcome
    if not todo:
        return outcome
    template = campaign.template
    composer: RawComposer | None = None
    try:
        compiled: CompiledTemplate | None = _compiled(template.subject, template.body_text, template.body_html)
        broken = ""
    except TemplateInvalid as exc:
        compiled, broken = None, f"template error: {exc}"
    try:
        composer = RawComposer(settings.DEFAULT_FROM_EMAIL)
    except ValueError:  # a sender that is not an address: Django's path reports it per recipient
        composer = None

    max_attempts = int(settings.EMAIL_MAX_ATTEMPTS_PER_RECIPIENT)
    permits = _Permits()
    slot = _Slot()
    slot.take()
    connection = _Connection()
    outcomes = _OutcomeWriter(token)
    total = len(todo)
    # Reported every EMAIL_PROGRESS_INTERVAL_S while sending, and once after the last message
    # (below the loop); each report recounts the campaign and writes the parent's row.
    last_report = time.monotonic()
    progress_interval_s = float(settings.EMAIL_PROGRESS_INTERVAL_S)
    commits = _AsynchronousCommits()
    try:
        commits.begin()
        connection.open()
        while todo:
            delivery = todo.popleft()
            if compiled is not None:
                permits.take_one()
            if not outcomes.claim_after_last(delivery.pk):
                outcome.skipped += 1
                continue
            attempts = delivery.attempts + 1
            if compiled is None:
                outcomes.record(delivery.pk, DeliveryStatus.FAILED, broken)
                outcome.failed += 1
                continue
            tag = f"{campaign.pk}/{delivery.pk}"
            smtp = connection.smtp if composer is not None else None
            try:
                context = {"user": delivery.user, "campaign": campaign, **delivery.context}
                parts = render_parts(compiled, context)
                message = _django_message(parts, delivery.email, tag) if smtp is None else None
            except Exception as exc:
                reason = f"template error: {type(exc).__name__}: {exc}"
                outcomes.record(delivery.pk, DeliveryStatus.FAILED, reason)
                outcome.failed += 1
                continue
            try:
                if smtp is not None and composer is not None:
                    result = deliver_raw(smtp, composer, parts, delivery.email, tag)
                else:
                    result = deliver(connection.backend, message or _django_message(parts, delivery.email, tag))
            except _Infrastructure as exc:
                _release(delivery.pk, token, str(exc), refund_attempt=True)
                raise SmtpUnavailable(str(exc)) from exc
            except BaseException:
                # Not handed over (or we cannot tell): give the row back before the error goes up.
                _release(delivery.pk, token, refund_attempt=True)
                raise
            if result.kind == "sent":
                outcomes.record(delivery.pk, DeliveryStatus.SENT, result.response, sent_at=timezone.now())
                outcome.sent += 1
            elif result.kind in ("bounced", "failed"):
                outcomes.record(delivery.pk, result.kind, result.response)
                setattr(outcome, result.kind, getattr(outcome, result.kind) + 1)
            elif attempts >= max_attempts:
                reason = f"gave up after {attempts} attempts: {result.response}"
                outcomes.record(delivery.pk, DeliveryStatus.FAILED, reason)
                outcome.failed += 1
            elif result.kind == "dropped":
                outcomes.record(delivery.pk, DeliveryStatus.PENDING, result.response)
                delivery.attempts = attempts
                todo.appendleft(delivery)
                connection.reopen()
                outcome.reconnects += 1
            else:  # temporary (4xx): tried again when the batch runs again
                outcomes.record(delivery.pk, DeliveryStatus.PENDING, result.response)
                outcome.retry_later += 1
            slot.renew()
            now = time.monotonic()
            if todo and now - last_report >= progress_interval_s:
                last_report = now
                outcomes.flush()
                if Campaign.is_cancelled(campaign_id):  # the parent was cancelled: the rest stays unsent
                    outcome.not_sent = len(todo)
                    break
                if report is not None:
                    report(campaign.refresh_counts(), total - len(todo), total)
    finally:
        try:
            outcomes.flush()
        finally:
            outcomes.close()
            connection.close()
            slot.release()
            commits.restore()
            if todo:  # stopped early (cancelled, an error): the campaign's counts say so at once
                campaign.refresh_counts()
    if report is not None and _report_clock.due(campaign_id, progress_interval_s):
        report(campaign.refresh_counts(), total - len(todo), total)
    if outcome.retry_later:
        raise SendingDeferred(
            settings.EMAIL_TEMPORARY_RETRY_DELAY_S,
            f"{outcome.retry_later} recipient(s) answered 4xx; trying them again",
        )
    return outcome
