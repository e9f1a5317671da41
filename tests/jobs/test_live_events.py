"""The event hook (jobs.events) and the client-side ordering rules (jobs.realtime.state), in process."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from jobs import events
from jobs.events import JobEvent
from jobs.hot_writes import Applied, Claim, Completion
from jobs.realtime.state import LatestState


@pytest.fixture
def heard() -> Iterator[list[JobEvent]]:
    """The events announced during the test (made-up job ids: kept from the real publisher)."""
    seen: list[JobEvent] = []
    installed = list(events._event_listeners)
    events._event_listeners[:] = [seen.append]
    yield seen
    events._event_listeners[:] = installed


def test_a_writer_batch_announces_only_the_writes_that_changed_their_job(heard):
    batch = [
        SimpleNamespace(write=Claim("a", 0, "w"), result=Applied(7)),
        SimpleNamespace(write=Claim("b", 0, "w"), result=False),  # a duplicate message: no change
        SimpleNamespace(write=Completion("c", "w", None, {"message": "done"}), result=Applied(None)),
        SimpleNamespace(write=lambda: None, result=True),  # a progress write: announced by jobs.progress
    ]
    events.publish_committed(batch)
    assert [(e.job_id, e.status, e.progress, e.owner_id, e.owner_known) for e in heard] == [
        ("a", "active", None, 7, True),
        ("c", "completed", 100, None, True),
    ]


def test_a_status_change_is_announced_only_once_its_transaction_commits(db, heard, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        events.publish_status("a", "failed", error="boom")
        assert heard == []
    assert [(e.job_id, e.status, e.error) for e in heard] == [("a", "failed", "boom")]


def message(kind: str, status: str, progress: int | None = None) -> dict[str, object]:
    return {"type": kind, "job_id": "a", "status": status, "progress": progress, "data": None, "error": ""}


def test_events_older_than_the_snapshot_are_dropped():
    state = LatestState()
    state.remember(message("snapshot", "active", 60))
    assert not state.is_news(message("progress", "active", 40))
    assert not state.is_news(message("status", "active"))
    assert not state.is_news(message("created", "queued", 0))
    assert state.is_news(message("progress", "active", 80))
    assert state.is_news(message("status", "completed", 100))


def test_progress_after_the_end_is_dropped_but_a_retry_starts_over():
    state = LatestState()
    state.remember(message("snapshot", "failed", 30))
    assert not state.is_news(message("progress", "active", 50))
    retried = state.advance(message("status", "queued", 0))
    assert retried["progress"] == 0
    assert state.is_news(message("status", "active"))
    assert state.advance(message("status", "active"))["progress"] == 0
