"""Group commit for the job mirror's hot writes.

Every job makes two state writes (claim, completion). Done one transaction
each, a worker pays one WAL flush per write: measured here, eight threads
committing single-row updates reached ~2,200 commits/s in all, which capped
the whole system near 1,000 jobs/s. Inside a worker process, those writes go
to one writer thread that sends whatever has queued up as one statement
(``jobs.state.batch``): under load, one flush covers many jobs; when idle, a
write goes out at once (there is no batching delay). A claim's caller waits
for it to commit. A completion's caller does not: the worker thread moves on
to its next message, and the message's acknowledgement to Redis waits for
the commit instead (``jobs.worker.broker.AckGate``), so nothing is acknowledged
before its state is durable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from django.db import InterfaceError, OperationalError, close_old_connections, connection, transaction

from jobs.state import events
from jobs.state.batch import Write, apply

logger = logging.getLogger(__name__)

_MAX_BATCH = 256


Callback = Callable[[Any, BaseException | None], None]


class PendingWrite:
    """A write handed to the writer; ``wait()`` gives its result once committed."""

    __slots__ = ("callback", "done", "error", "result", "write")

    def __init__(self, write: Write, callback: Callback | None = None) -> None:
        self.write = write
        self.callback = callback
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def wait(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


class StateWriter:
    """A few threads (each with its own connection) taking turns at the queue of writes.

    One thread by default (``JOBS_STATE_WRITER_THREADS``): on this 2-core
    machine two or three measured no faster. More threads are safe: a job's
    completion is only queued after its claim has committed, and two claims
    of one job serialize on its row.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[PendingWrite | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._local = threading.local()

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def _is_writer_thread(self) -> bool:
        return threading.current_thread() in self._threads

    def start(self, threads: int = 1) -> None:
        if not self.running:
            self._threads = [
                threading.Thread(target=self._run, name=f"conveyor-state-writer-{n}", daemon=True)
                for n in range(max(1, threads))
            ]
            for thread in self._threads:
                thread.start()

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    def write(self, write: Write) -> Any:
        """Run a write in the writer's next transaction (at once outside a worker) and return its result."""
        return self.submit(write).wait()

    def write_later(self, write: Write, callback: Callback) -> None:
        """Queue a write without waiting; ``callback(result, error)`` runs once it is committed."""
        self.submit(write, callback)

    def submit(self, write: Write, callback: Callback | None = None) -> PendingWrite:
        """Queue a write and return at once; the caller ``wait()``s for its result when it needs it.

        Outside a worker (no writer running), or from the writer's own
        thread, the write runs at once in the caller's thread.
        """
        item = PendingWrite(write, callback)
        if self.running and not self._is_writer_thread():
            self._queue.put(item)
            return item
        try:
            item.result = apply([write])[0]
        except Exception as exc:  # noqa: BLE001 - handed to whoever waits, or to the callback
            item.error = exc
        item.done.set()
        if callback is not None:
            callback(item.result, item.error)
        return item

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self._commit(batch)
        close_old_connections()

    def _commit(self, batch: list[PendingWrite]) -> None:
        now = time.monotonic()
        if now - getattr(self._local, "checked", 0.0) > 30:
            # Not per batch: a health check is a round trip of its own.
            close_old_connections()
            self._local.checked = now
        try:
            self._write_until_done(batch)
        finally:
            # Live progress: status events for what committed, queued (no I/O) before any
            # waiting thread resumes, so a claim's event precedes the job's progress events.
            events.publish_committed(batch)
            for item in batch:
                item.done.set()
                if item.callback is not None:
                    try:
                        item.callback(item.result, item.error)
                    except Exception:
                        logger.exception("A job write's callback failed")

    def _write_until_done(self, batch: list[PendingWrite]) -> None:
        """Write the batch; while the database is unreachable, wait for it (up to a limit).

        Giving up at once would lose the outcome of jobs that ran: their
        messages are acknowledged only after their completion commits, but a
        job whose completion never lands would stay ``active`` forever on a
        worker that is alive.
        """
        from django.conf import settings

        deadline = time.monotonic() + float(settings.JOBS_STATE_WRITE_RETRY_S)
        pause = 0.1
        pending = batch
        while True:
            try:
                self._write(pending)
                return
            except _UNREACHABLE as exc:
                _drop_connection()
                # Writes that went through one by one before the outage are done.
                pending = [item for item in pending if item.result is None and item.error is None]
                if time.monotonic() >= deadline:
                    logger.error("The database stayed unreachable; %d job writes failed: %s", len(batch), exc)
                    for item in pending:
                        item.error = exc
                    return
                logger.warning("The database is unreachable (%s); retrying %d job writes", exc, len(pending))
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    @staticmethod
    def _write(batch: list[PendingWrite]) -> None:
        try:
            for item, result in zip(batch, apply([item.write for item in batch]), strict=True):
                item.result = result
            return
        except _UNREACHABLE:
            raise
        except Exception:
            close_old_connections()
            # One bad write must not fail the others: run them one by one.
            logger.warning("A batch of %d job writes failed; retrying them one by one", len(batch), exc_info=True)
        for item in batch:
            try:
                with transaction.atomic():
                    item.result = apply([item.write])[0]
            except _UNREACHABLE:
                raise
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                item.error = exc


#: Errors that mean "the database is away", not "this write is wrong".
_UNREACHABLE = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


def is_unreachable(error: BaseException) -> bool:
    """Whether a write failed because the database was away (trying again may succeed)."""
    return isinstance(error, _UNREACHABLE)


def _drop_connection() -> None:
    """Close this thread's connection after it failed (the hot writes use psycopg directly, unseen by Django)."""
    try:
        connection.close()
    except Exception:
        logger.debug("Closing a broken database connection failed", exc_info=True)


#: The worker process's writer; started by the job mirror at worker boot.
state_writer = StateWriter()
