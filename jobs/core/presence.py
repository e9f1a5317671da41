"""Presence of long-running processes (workers, schedulers) in Redis: heartbeats and clean goodbyes.

Each process keeps one JSON entry in a hash (``host``, ``pid``,
``heartbeat_at`` in Redis's time, see ``jobs.core.clock``), rewritten by a
thread of its own. A process that stops cleanly (SIGTERM: a deploy, a
scale-down) removes its entry and records a goodbye in a second hash: the
alert rules page for a process whose entry has gone stale, never for one
that said goodbye. A process killed (SIGKILL, OOM, a lost host) leaves its
entry behind, going stale.

Entries and goodbyes older than ``PRESENCE_FORGET_S`` are forgotten, so the
hashes do not grow with every process that ever ran.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


def goodbyes_key(presence_key: str) -> str:
    return f"{presence_key}:stopped"


@dataclass(frozen=True)
class PresenceEntry:
    """One process as its last heartbeat described it."""

    id: str
    host: str
    pid: int | str
    heartbeat_at: float
    data: dict[str, Any]

    def age_s(self, now: float) -> float:
        return max(0.0, now - self.heartbeat_at)

    @property
    def label(self) -> str:
        """How an operator finds it: ``host:pid`` (and the id's start, as pids are reused)."""
        return f"{self.host}:{self.pid} ({self.id[:8]})"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_entries(client: Any, presence_key: str) -> list[PresenceEntry]:
    """Every entry of the hash, stale ones included; an unreadable entry is skipped."""
    entries = []
    for member, raw in client.hgetall(presence_key).items():
        try:
            data = json.loads(raw)
            entries.append(
                PresenceEntry(
                    id=_text(member),
                    host=str(data.get("host", "")),
                    pid=data.get("pid", ""),
                    heartbeat_at=float(data.get("heartbeat_at", 0)),
                    data=data,
                )
            )
        except (ValueError, TypeError):
            logger.warning("Unreadable presence entry %r in %s", member, presence_key)
    return entries


def say_goodbye(client: Any, presence_key: str, member: str, now: float) -> None:
    """A clean stop: the entry goes and the goodbye stays (a late heartbeat cannot undo it)."""
    with client.pipeline(transaction=True) as pipe:
        pipe.hdel(presence_key, member)
        pipe.hset(goodbyes_key(presence_key), member, str(now))
        pipe.execute()


def said_goodbye(client: Any, presence_key: str) -> set[str]:
    return {_text(member) for member in client.hkeys(goodbyes_key(presence_key))}


def gone_entries(client: Any, presence_key: str, now: float, gone_after_s: float) -> list[PresenceEntry]:
    """Entries that have not heartbeated for ``gone_after_s`` and did not say goodbye: processes lost."""
    stopped = said_goodbye(client, presence_key)
    return [
        entry
        for entry in read_entries(client, presence_key)
        if entry.id not in stopped and entry.age_s(now) >= gone_after_s
    ]


def forget_old(client: Any, presence_key: str, now: float, forget_after_s: float) -> int:
    """Remove entries and goodbyes older than ``forget_after_s``; returns how many went."""
    old = [entry.id for entry in read_entries(client, presence_key) if entry.age_s(now) >= forget_after_s]
    goodbyes = client.hgetall(goodbyes_key(presence_key))
    old_goodbyes = [member for member, at in goodbyes.items() if now - float(at) >= forget_after_s]
    if old:
        client.hdel(presence_key, *old)
    if old_goodbyes:
        client.hdel(goodbyes_key(presence_key), *old_goodbyes)
    return len(old) + len(old_goodbyes)
