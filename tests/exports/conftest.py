from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller


@pytest.fixture
def media_root(settings, tmp_path):
    """Exported files go to a directory of this test's own."""
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@dataclass
class Mailbox:
    """A real SMTP server's record of what it accepted, per recipient (aiosmtpd handler hooks)."""

    #: How many more DATA commands to refuse with a temporary error (a server that is busy).
    refuse_next: int = 0
    received: list[tuple[str, EmailMessage]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                return "451 4.3.0 busy, try again later"
            message = message_from_bytes(envelope.content, policy=policy.default)
            for address in envelope.rcpt_tos:
                self.received.append((address, message))  # type: ignore[arg-type]
        return "250 2.0.0 OK queued"

    def recipients(self) -> list[str]:
        with self.lock:
            return sorted(address for address, _ in self.received)

    def messages_to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [message for to, message in self.received if to == address]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def mail_server() -> Iterator[tuple[Mailbox, dict[str, str]]]:
    """A local SMTP server (aiosmtpd) and the environment that sends a worker pool's email to it."""
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    env = {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(port),
        "DEFAULT_FROM_EMAIL": "conveyor@example.com",
    }
    yield mailbox, env
    controller.stop()
