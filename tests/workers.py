"""Real Dramatiq worker pools for tests: `manage.py rundramatiq` processes on real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def terminate(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM a test's server process; kill it if it is still there after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll until ``condition()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def database_url() -> str:
    """The URL of the database this test runs against (pytest-django's test database)."""
    params = connection.settings_dict
    if params["ENGINE"] == "django.db.backends.sqlite3":
        # A file (config.settings_test names one), so other processes see it too.
        if str(params["NAME"]).startswith("file:") or params["NAME"] == ":memory:":
            raise RuntimeError("tests with worker processes need an SQLite file, not an in-memory database")
        return f"sqlite:///{params['NAME']}"
    if "postgresql" not in params["ENGINE"]:
        raise RuntimeError("tests with worker processes need PostgreSQL or SQLite (set DATABASE_URL)")
    user = params.get("USER") or "postgres"
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{params['NAME']}"


class WorkerPool:
    """One `rundramatiq` pool (a main process and its worker processes) for one queue."""

    def __init__(self, queue: str, *, processes: int = 1, threads: int = 1, env: dict[str, str] | None = None):
        self.queue = queue
        self.processes = processes
        self.threads = threads
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = ROOT / "var" / f"test-pool-{queue}-{os.getpid()}.log"

    def start(self) -> WorkerPool:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings_test",
            "DATABASE_URL": database_url(),
            "dramatiq_queue_prefetch": str(self.threads),
            **self.env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "rundramatiq",
                "--processes",
                str(self.processes),
                "--threads",
                str(self.threads),
                "--queues",
                self.queue,
                "--worker-shutdown-timeout",
                "20000",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for(lambda: len(self.worker_processes()) >= self.processes, 30, 0.1, "worker processes to start")
        except BaseException:
            # Not handed to the test, so nothing else would stop it: it would outlive the test.
            self.stop()
            raise
        return self

    def worker_processes(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            children = psutil.Process(self.proc.pid).children(recursive=False)
        except psutil.NoSuchProcess:
            return []
        # The main process also starts a log-watcher thread only; its children are worker processes.
        workers = []
        for child in children:
            try:
                if "rundramatiq" not in " ".join(child.cmdline()[:1]):
                    workers.append(child)
            except psutil.NoSuchProcess:
                continue  # exited between the listing and the read (a worker restarting, or shutting down)
        return workers

    def kill_worker(self) -> int:
        """kill -9 one worker process (its pool's main process then shuts down)."""
        victim = self.worker_processes()[0]
        victim.send_signal(signal.SIGKILL)
        return victim.pid

    def terminate(self) -> None:
        """SIGTERM the main process only, as an operator would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
