"""The SMTP side of sending: one reused connection, each message's bytes, and what the server answered.

A batch opens one ``SmtpConnection`` and hands it a message per recipient.
On Django's SMTP backend each message is written as bytes
(``rendering.RawComposer``) straight onto the backend's smtplib connection
(``deliver_raw``); any other backend (locmem in tests, console) gets
Django's message object (``deliver``).

Each transaction's outcome is sorted into an ``SmtpResult``: 2xx → sent;
5xx to RCPT → bounced; an invalid address or a 5xx to DATA → failed; 4xx →
temporary; a dropped connection (or 421) → dropped. A refused sender is the
server's refusal of the whole batch (``ServerRefused``), not a recipient's.
"""

from __future__ import annotations

import functools
import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.core.mail.message import sanitize_address

from campaigns.exceptions import SmtpUnavailable
from campaigns.rendering import PLAIN_ADDRESS, RawComposer

logger = logging.getLogger(__name__)

#: Header naming the delivery, so a bounce or a duplicate can be traced to its row.
DELIVERY_HEADER = "X-Conveyor-Delivery"


@dataclass(frozen=True)
class SmtpResult:
    """What the server answered for one recipient."""

    kind: str  # sent | bounced | failed | temporary | dropped
    response: str


class ServerRefused(Exception):
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
        message = django_message(parts, to, tag)
        payload = message.message().as_bytes(linesep="\r\n")
    return _smtp_transaction(conn, composer.sender, [recipient], payload)


def deliver_raw(
    conn: smtplib.SMTP, composer: RawComposer, parts: tuple[str, str, str], to: str, tag: str
) -> SmtpResult:
    """Compose one message's bytes and hand them to an open smtplib connection; classify what happened."""
    return _classified(functools.partial(_raw_transaction, conn, composer, parts, to, tag))


def django_message(parts: tuple[str, str, str], to: str, tag: str) -> EmailMessage:
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
        raise ServerRefused(f"sender refused: {_answer(exc.smtp_code, exc.smtp_error)}") from exc
    except smtplib.SMTPServerDisconnected as exc:
        return SmtpResult("dropped", f"connection dropped: {exc}")
    except smtplib.SMTPResponseException as exc:  # SMTPDataError and others with a code
        if exc.smtp_code == 421:  # the server is closing the connection
            return SmtpResult("dropped", _answer(exc.smtp_code, exc.smtp_error))
        kind = "failed" if exc.smtp_code >= 500 else "temporary"
        return SmtpResult(kind, _answer(exc.smtp_code, exc.smtp_error))
    except OSError as exc:  # socket timeouts and resets included
        return SmtpResult("dropped", f"connection lost: {exc}")


class SmtpConnection:
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
