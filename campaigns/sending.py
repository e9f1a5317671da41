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
"""

from __future__ import annotations

import functools
import logging
import random
import smtplib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.core.mail.message import sanitize_address
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from campaigns.exceptions import CampaignNotFound, SendingDeferred, SmtpUnavailable
from campaigns.models import Campaign, Delivery, DeliveryStatus
from campaigns.ratelimit import ConnectionSlots, SendRateLimiter
from campaigns.rendering import CompiledTemplate, TemplateInvalid, build_message, compile_template

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


def _smtp_transaction(conn: smtplib.SMTP, message: EmailMessage) -> str:
    """MAIL, RCPT, DATA for one message with one recipient; returns the server's final answer.

    ``smtplib.sendmail`` throws the final answer away; the delivery keeps it.
    """
    encoding = message.encoding or settings.DEFAULT_CHARSET
    sender = _sanitized_sender(message.from_email, encoding)
    recipients = [sanitize_address(address, encoding) for address in message.recipients()]
    payload = message.message().as_bytes(linesep="\r\n")
    conn.ehlo_or_helo_if_needed()
    options = ["BODY=8BITMIME"] if conn.has_extn("8bitmime") else []
    if any(not address.isascii() for address in [sender, *recipients]) and conn.has_extn("smtputf8"):
        options.append("SMTPUTF8")
    code, reply = conn.mail(sender, options)
    if code != 250:
        _reset(conn)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    for address in recipients:
        code, reply = conn.rcpt(address)
        if code not in (250, 251):
            _reset(conn)
            raise smtplib.SMTPRecipientsRefused({address: (code, reply)})
    code, reply = conn.data(payload)
    if code != 250:
        _reset(conn)
        raise smtplib.SMTPDataError(code, reply)
    return _answer(code, reply)


def _reset(conn: smtplib.SMTP) -> None:
    try:
        conn.rset()
    except smtplib.SMTPServerDisconnected:
        pass


def deliver(backend: Any, message: EmailMessage) -> SmtpResult:
    """Hand one message to an open backend and classify what happened."""
    try:
        conn = getattr(backend, "connection", None)
        if isinstance(conn, smtplib.SMTP):
            return SmtpResult("sent", _smtp_transaction(conn, message))
        # Another backend (locmem in unit tests, console): it only says yes or raises.
        backend.send_messages([message])
        return SmtpResult("sent", "accepted")
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


def _mark(delivery_id: int, token: str, status: str, response: str, **extra: Any) -> None:
    Delivery.objects.filter(id=delivery_id, status=DeliveryStatus.SENDING, claimed_by=token).update(
        status=status, smtp_response=response[:2000], updated_at=timezone.now(), **extra
    )


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


def _mark_and_claim(last_id: int, status: str, response: str, sent_at: Any, next_id: int, token: str) -> bool:
    """The last row's final outcome and the next row's claim in one UPDATE (one round trip, one commit)."""
    sql = _MARK_AND_CLAIM.format(table=db_connection.ops.quote_name(Delivery._meta.db_table))
    params = {
        "next": next_id,
        "last": last_id,
        "status": status,
        "token": token,
        "response": response[:2000],
        "sent_at": sent_at,
        "now": timezone.now(),
    }
    with db_connection.cursor() as cursor:
        cursor.execute(sql, params)
        updated = {row[0] for row in cursor.fetchall()}
    return next_id in updated


class _OutcomeWriter:
    """Writes each message's outcome in the same transaction as the next message's claim.

    One commit per message instead of two, and still at most one row of the
    batch in ``sending`` at any moment: the previous row leaves ``sending``
    in the very commit that puts the next one there.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self._last: tuple[int, str, str, dict[str, Any]] | None = None

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
            _mark(delivery_id, self.token, status, response, **extra)

    def claim_after_last(self, delivery_id: int) -> bool:
        """Write the last outcome and claim this row (``pending → sending``): one statement, one commit."""
        if self._last is None or self._last[1] == DeliveryStatus.PENDING:
            with transaction.atomic():
                self._write_last()
                return _claim(delivery_id, self.token)
        last_id, status, response, extra = self._last
        self._last = None
        return _mark_and_claim(last_id, status, response, extra.get("sent_at"), delivery_id, self.token)

    def flush(self) -> None:
        self._write_last()


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
    outcome.reclaimed = Delivery.objects.filter(
        id__in=delivery_ids, status=DeliveryStatus.SENDING, claimed_by=token
    ).update(status=DeliveryStatus.PENDING, claimed_by="", updated_at=timezone.now())
    if outcome.reclaimed:
        logger.warning(
            "Batch %s was interrupted while sending: %d message(s) in doubt are sent again",
            token,
            outcome.reclaimed,
        )
    todo = deque(
        Delivery.objects.filter(id__in=delivery_ids, status=DeliveryStatus.PENDING)
        .select_related("user")
        .order_by("id")
    )
    outcome.skipped = len(delivery_ids) - len(todo)
    if not todo:
        return outcome
    template = campaign.template
    try:
        compiled: CompiledTemplate | None = compile_template(template.subject, template.body_text, template.body_html)
        broken = ""
    except TemplateInvalid as exc:
        compiled, broken = None, f"template error: {exc}"

    max_attempts = int(settings.EMAIL_MAX_ATTEMPTS_PER_RECIPIENT)
    permits = _Permits()
    slot = _Slot()
    slot.take()
    connection = _Connection()
    outcomes = _OutcomeWriter(token)
    total = len(todo)
    last_report = 0.0
    try:
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
            try:
                context = {"user": delivery.user, "campaign": campaign, **(delivery.context or {})}
                message = build_message(
                    compiled, context, delivery.email, {DELIVERY_HEADER: f"{campaign.pk}/{delivery.pk}"}
                )
            except Exception as exc:
                reason = f"template error: {type(exc).__name__}: {exc}"
                outcomes.record(delivery.pk, DeliveryStatus.FAILED, reason)
                outcome.failed += 1
                continue
            try:
                result = deliver(connection.backend, message)
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
            if report is not None and (now - last_report >= settings.EMAIL_PROGRESS_INTERVAL_S or not todo):
                last_report = now
                outcomes.flush()
                report(campaign.refresh_counts(), total - len(todo), total)
    finally:
        try:
            outcomes.flush()
        finally:
            connection.close()
            slot.release()
    if report is not None:
        report(campaign.refresh_counts(), total, total)
    if outcome.retry_later:
        raise SendingDeferred(
            settings.EMAIL_TEMPORARY_RETRY_DELAY_S,
            f"{outcome.retry_later} recipient(s) answered 4xx; trying them again",
        )
    return outcome
