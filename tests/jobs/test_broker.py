"""The Redis broker orders waiting messages by priority and wakes idle consumers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from dramatiq.message import Message

from jobs.worker.broker import ConveyorRedisBroker
from tests.services import PrivateRedis


@pytest.fixture
def broker() -> Iterator[ConveyorRedisBroker]:
    server = PrivateRedis().start()
    yield ConveyorRedisBroker(url=server.url, namespace="t", middleware=[])
    server.cleanup()


def _message(name: str, priority: str = "normal") -> Message:
    return Message(
        queue_name="q",
        actor_name="a",
        args=(),
        kwargs={},
        options={"conveyor_priority": priority},
        message_id=name,
    )


def _waiting(broker: ConveyorRedisBroker) -> list[str]:
    items: list[bytes] = broker.client.lrange(broker.queue_key("q"), 0, -1)  # type: ignore[assignment]
    return [item.decode().split(".")[0] for item in items]


def test_high_messages_go_after_waiting_high_ones_and_before_normal_ones(broker):
    for name, priority in [
        ("n1", "normal"),
        ("n2", "normal"),
        ("h1", "high"),
        ("n3", "normal"),
        ("h2", "high"),
    ]:
        broker.enqueue(_message(name, priority))
    assert _waiting(broker) == ["h1", "h2", "n1", "n2", "n3"]


def test_idle_consumer_wakes_as_soon_as_a_message_arrives(broker):
    broker.declare_queue("q")
    consumer = broker.consume("q", prefetch=1, timeout=5000)
    assert next(consumer) is None or True  # drain any wake token from declaring
    import threading

    threading.Timer(0.3, lambda: broker.enqueue(_message("m1"))).start()
    started = time.monotonic()
    message = None
    while message is None and time.monotonic() - started < 5:
        message = next(consumer)
    assert message is not None and message.message_id == "m1"
    # Woken by the enqueue, not by the 5 s idle timeout.
    assert time.monotonic() - started < 2.5


def test_message_ids_in_redis_sees_waiting_and_delayed_messages(broker):
    broker.enqueue(_message("now"))
    broker.enqueue(_message("later"), delay=60_000)
    assert broker.message_ids_in_redis("q") == {"now", "later"}
