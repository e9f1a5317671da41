"""The event hook (jobs.state.events) and the client-side ordering rules (jobs.web.realtime.state), in process."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from jobs.state import events
from jobs.state.batch import Applied, Claim, Completion
from jobs.state.events import JobEvent
from jobs.web.realtime.state import LatestState


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
        SimpleNamespace(write=lambda: None, result=True),  # a progress write: announced by jobs.worker.progress
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


def test_the_publisher_sends_an_event_only_to_its_groups_that_have_a_subscriber(clean_redis, settings):
    import json

    import redis as redis_lib
    from channels.layers import get_channel_layer

    from jobs.web.realtime.groups import group_channel_prefix, job_group, layer_config
    from jobs.web.realtime.publisher import LivePublisher

    settings.JOBS_LIVE_DISCOVERY_S = 0.0  # ask Redis on every batch
    host = layer_config()["hosts"][0]
    client = redis_lib.Redis.from_url(host if isinstance(host, str) else host["address"])
    prefix = group_channel_prefix()
    # Given a socket on one job's group, and an observer of every group channel
    # (a pattern subscription, which publishers do not count as a subscriber)
    watcher, observer = client.pubsub(), client.pubsub()
    watcher.subscribe(prefix + job_group("watched"))
    observer.psubscribe(prefix + "*")
    for pubsub in (watcher, observer):
        assert pubsub.get_message(timeout=2)["type"] in ("subscribe", "psubscribe")

    # When events of the watched job and of another job are published (their owner's and staff's
    # groups have no subscriber either)
    LivePublisher().publish(
        [
            JobEvent("status", "unwatched", "active", None, None, "", 5, True),
            JobEvent("status", "watched", "completed", 100, None, "", 5, True),
        ]
    )

    # Then exactly one message went out: the watched job's, to its own group
    layer = get_channel_layer()
    received = [observer.get_message(timeout=2)]
    while (extra := observer.get_message(timeout=0.3)) is not None:
        received.append(extra)
    assert [(m["channel"].decode(), layer.deserialize(m["data"])["event"]["job_id"]) for m in received] == [
        (prefix + job_group("watched"), "watched")
    ]
    assert json.dumps(layer.deserialize(watcher.get_message(timeout=2)["data"])["event"]["status"]) == '"completed"'
    watcher.close()
    observer.close()
    client.close()
