"""A real ASGI web server for tests: uvicorn in a subprocess, serving HTTP and WebSocket.

It runs ``config.asgi:application`` with the test settings against the test
database (so rows a ``transactional_db`` test writes are visible to it) and
the test's Redis namespace (so its channel layer only meets this test's workers).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from bench.processes import start_logged
from jobs.ops.supervisor import web_spec
from tests.workers import ROOT, database_url, terminate, wait_for


def session_cookie(user: Any) -> str:
    """A Django session, stored in the test database, that signs ``user`` in (the cookie's value)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return str(session.session_key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class WebServer:
    """``uvicorn config.asgi:application`` on a free loopback port; ``url``/``ws_url`` address it."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env or {}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path = ROOT / "var" / f"test-web-{os.getpid()}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> WebServer:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings_test",
            "DATABASE_URL": database_url(),
            **self.env,
        }
        # Set by the browser fixtures for the test process only; the server keeps Django's async checks.
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        # The very command `make run` starts (jobs/supervisor.py), with one process.
        self.proc = start_logged(web_spec(host="127.0.0.1", port=self.port, workers=1).argv, self.log_path, env)
        wait_for(lambda: self._running_or_fail() and _accepts(self.port), 30, 0.1, "the web server to listen")
        return self

    def _running_or_fail(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the web server exited with {self.proc.returncode}:\n{self.log()}")
        return True

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout=15)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
