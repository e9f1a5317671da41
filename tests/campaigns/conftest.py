"""A real SMTP server (aiosmtpd on a loopback port) that records, rejects and drops on request."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from campaigns.smtp import DELIVERY_HEADER
from tests.workers import wait_for


@dataclass
class Received:
    to: str
    delivery: str
    at: float
    subject: str
    body: str


@dataclass
class SmtpSink:
    """What the server does to whom: set these before the test sends."""

    #: address -> reply to RCPT, e.g. "550 5.1.1 no such user" or "451 4.7.1 try later"
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    #: address -> how many more times its RCPT answers 451 before it is accepted
    rcpt_temporary: dict[str, int] = field(default_factory=dict)
    #: address -> reply to DATA (e.g. "554 5.6.0 content rejected")
    data_replies: dict[str, str] = field(default_factory=dict)
    #: address -> how many more times the server drops the connection at its RCPT
    drops: dict[str, int] = field(default_factory=dict)
    #: seconds the server takes over each message before it answers DATA
    data_delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    open_connections: int = 0
    max_open_connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- aiosmtpd handler hooks ---------------------------------------------
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        with self.lock:
            if self.drops.get(address, 0) > 0:
                self.drops[address] -= 1
                server.transport.close()
                return "421 4.4.2 dropped by the test"
            if self.rcpt_temporary.get(address, 0) > 0:
                self.rcpt_temporary[address] -= 1
                return "451 4.7.1 greylisted, try again later"
            reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        to = envelope.rcpt_tos[0]
        reply = self.data_replies.get(to)
        if reply:
            return reply
        if self.data_delay_s:
            await asyncio.sleep(self.data_delay_s)
            if server.transport is None or server.transport.is_closing():
                # The client went away before our answer: the message is not kept.
                return "451 4.4.2 client gone"
        parsed = message_from_bytes(envelope.content)
        payload = parsed.get_payload(0) if parsed.is_multipart() else parsed
        body = payload.get_payload(decode=True).decode(errors="replace")  # type: ignore[union-attr]
        with self.lock:
            self.received.append(
                Received(to, parsed.get(DELIVERY_HEADER, ""), time.time(), parsed.get("Subject", ""), body)
            )
        return "250 2.0.0 OK queued"

    # -- connection counting -------------------------------------------------
    def opened(self) -> None:
        with self.lock:
            self.connections += 1
            self.open_connections += 1
            self.max_open_connections = max(self.max_open_connections, self.open_connections)

    def closed(self) -> None:
        with self.lock:
            self.open_connections -= 1

    # -- what the tests read -------------------------------------------------
    def addresses(self) -> list[str]:
        with self.lock:
            return [item.to for item in self.received]

    def per_delivery(self) -> Counter[str]:
        with self.lock:
            return Counter(item.delivery for item in self.received)

    def max_in_any_window(self, window_s: float) -> int:
        with self.lock:
            times = sorted(item.at for item in self.received)
        best, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= window_s:
                start += 1
            best = max(best, end - start + 1)
        return best


class _CountingController(Controller):  # type: ignore[misc]
    def __init__(self, sink: SmtpSink, **kwargs: Any) -> None:
        super().__init__(sink, **kwargs)
        self.sink = sink

    def factory(self) -> Any:
        smtp = super().factory()
        sink = self.sink
        made, lost = smtp.connection_made, smtp.connection_lost

        def connection_made(transport: Any) -> None:
            sink.opened()
            made(transport)

        def connection_lost(exc: Any) -> None:
            sink.closed()
            lost(exc)

        smtp.connection_made, smtp.connection_lost = connection_made, connection_lost
        return smtp


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[tuple[SmtpSink, int]]:
    """A local SMTP server; this process's email goes to it through Django's SMTP backend."""
    sink = SmtpSink()
    port = _free_port()
    controller = _CountingController(sink, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    # Forget the controller's own readiness probe.
    wait_for(lambda: sink.open_connections == 0, timeout=5, what="the readiness probe to close")
    sink.connections = sink.max_open_connections = 0
    # pytest-django forces the locmem backend: talk SMTP for real.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_TIMEOUT = 10
    yield sink, port
    controller.stop()


@pytest.fixture
def smtp(smtp_server: tuple[SmtpSink, int]) -> SmtpSink:
    return smtp_server[0]


@pytest.fixture
def smtp_env(smtp_server: tuple[SmtpSink, int]) -> dict[str, str]:
    """Environment for worker pools: mail to the test server, short engine timings."""
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server[1]),
        "EMAIL_TEMPORARY_RETRY_DELAY_S": "0.5",
        "EMAIL_CONNECTION_RETRY_S": "0.5",
    }
