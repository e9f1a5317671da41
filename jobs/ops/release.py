"""One release step at a time, however many hosts start it: the lock behind ``manage.py release``.

Two hosts of a deploy may run the release step at once (two containers of
one compose file, two machines of a rolling deploy). Two ``migrate`` runs
side by side both see a migration as unapplied and both apply it: the
second fails on "relation already exists", or records it twice. So the step
runs under one lock per database:

- **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``, polled), taken
  on a connection of its own so that nothing ``migrate`` does to the default
  connection (closing it, a failed transaction) can drop it. If the process
  dies, PostgreSQL ends its session and releases the lock.
- **SQLite**: an exclusive ``flock`` on a file next to the database file.
  SQLite is one host's database, so a file lock reaches every process that
  can open it.

The second host waits, then finds every migration applied.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from django.db import connections

logger = logging.getLogger(__name__)

#: The advisory lock's key: "conveyor" in ASCII. Advisory locks are per
#: database, so deployments sharing a PostgreSQL server do not block each other.
RELEASE_LOCK_KEY = 0x636F6E7665796F72

#: How often a waiting release step asks for the lock again.
LOCK_POLL_S = 0.5

WAITING_MESSAGE = "Another process is running the release step: waiting for it to finish ({})"


@contextlib.contextmanager
def release_lock(alias: str = "default", *, say: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the database's release lock for the block; ``say`` is told when it has to wait."""
    vendor = connections[alias].vendor
    if vendor == "postgresql":
        with _advisory_lock(alias, say):
            yield
    elif vendor == "sqlite":
        with _file_lock(connections[alias].settings_dict["NAME"], say):
            yield
    else:  # not a database this project runs on; nothing to serialise against
        logger.warning("no release lock for a %s database: run the release step on one host only", vendor)
        yield


@contextlib.contextmanager
def _advisory_lock(alias: str, say: Callable[[str], None]) -> Iterator[None]:
    lock_connection = connections.create_connection(alias)
    try:
        with lock_connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [RELEASE_LOCK_KEY])
            (taken,) = cursor.fetchone()
            if not taken:
                say(WAITING_MESSAGE.format(f"PostgreSQL advisory lock {RELEASE_LOCK_KEY}"))
            # Polled, not a blocking pg_advisory_lock: a statement waiting on the lock keeps a snapshot
            # open, and a migration that builds an index CONCURRENTLY waits for every such snapshot, so
            # the holder's migration and this wait would wait on each other for ever.
            while not taken:
                time.sleep(LOCK_POLL_S)
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [RELEASE_LOCK_KEY])
                (taken,) = cursor.fetchone()
        try:
            yield
        finally:
            with lock_connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [RELEASE_LOCK_KEY])
    finally:
        lock_connection.close()


def sqlite_lock_path(database_name: str | Path) -> Path | None:
    """The lock file of an SQLite database file; ``None`` for an in-memory database (one process's own)."""
    name = str(database_name)
    if name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name + ".release-lock")


@contextlib.contextmanager
def _file_lock(database_name: str | Path, say: Callable[[str], None]) -> Iterator[None]:
    path = sqlite_lock_path(database_name)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(WAITING_MESSAGE.format(f"file lock {path}"))
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
