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


def _message(name: str, priority: str = "normal", owner: str = "sys", weight: int = 1, cost: float = 1) -> Message:
    return Message(
        queue_name="q",
        actor_name="a",
        args=(),
        kwargs={},
        options={
            "conveyor_priority": priority,
            "conveyor_owner": owner,
            "conveyor_weight": weight,
            "conveyor_cost": cost,
        },
        message_id=name,
    )


def _fetch(broker: ConveyorRedisBroker, count: int = 1, worker: str | None = None) -> list[str]:
    """Fetch up to ``count`` messages one at a time, as a worker with free slots would; their names."""
    names: list[str] = []
    for _ in range(count):
        if worker is not None:
            broker.broker_id = worker
        fetched = broker.ack_and_fetch("q", [], 1)
        if not fetched:
            break
        names.extend(Message.decode(data).message_id for data in fetched if data is not None)
    return names


def _running(broker: ConveyorRedisBroker) -> dict[str, int]:
    counts: dict[bytes, bytes] = broker.client.hgetall(broker.queue_key("q") + ".run")  # type: ignore[assignment]
    return {owner.decode(): int(count) for owner, count in counts.items()}


def _redis_id(broker: ConveyorRedisBroker, name: str) -> str:
    keys: list[bytes] = broker.client.hkeys(broker.messages_key("q"))  # type: ignore[assignment]
    return next(key.decode() for key in keys if key.decode().split(".")[0] == name)


def test_high_messages_go_before_normal_ones_and_keep_their_order(broker):
    for name, priority in [
        ("n1", "normal"),
        ("n2", "normal"),
        ("h1", "high"),
        ("n3", "normal"),
        ("h2", "high"),
    ]:
        broker.enqueue(_message(name, priority))
    assert _fetch(broker, 10) == ["h1", "h2", "n1", "n2", "n3"]


def test_owners_are_served_in_turn_whatever_order_they_posted_in(broker):
    for i in range(5):
        broker.enqueue(_message(f"a{i}", owner="u1"))
    for i in range(2):
        broker.enqueue(_message(f"b{i}", owner="u2"))
    assert _fetch(broker, 10) == ["a0", "b0", "a1", "b1", "a2", "a3", "a4"]


def test_an_owner_arriving_late_waits_one_turn_not_behind_the_backlog(broker):
    for i in range(100):
        broker.enqueue(_message(f"a{i}", owner="u1"))
    assert _fetch(broker, 10) == [f"a{i}" for i in range(10)]
    broker.enqueue(_message("b0", owner="u2"))
    assert "b0" in _fetch(broker, 2)


def test_an_owner_that_starts_waiting_on_a_busy_queue_is_served_first_for_its_credit_then_in_turn(settings):
    # Given a head start of 5 s of estimated work, and A's backlog of 1-s jobs keeping the queue busy
    settings.FAIR_SHARE_IDLE_CREDIT_S = 5
    server = PrivateRedis().start()
    try:
        broker = ConveyorRedisBroker(url=server.url, namespace="t", middleware=[])
        for i in range(100):
            broker.enqueue(_message(f"a{i}", owner="u1"))
        assert _fetch(broker, 20) == [f"a{i}" for i in range(20)]  # A's tag is now 20, the virtual time 19
        # When B starts waiting with ten jobs
        for i in range(10):
            broker.enqueue(_message(f"b{i}", owner="u2"))
        # Then B enters 5 before the virtual time (tag 14): served first until its tag reaches A's, then in turn
        assert _fetch(broker, 6) == [f"b{i}" for i in range(6)]
        assert _fetch(broker, 8) == ["a20", "b6", "a21", "b7", "a22", "b8", "a23", "b9"]  # ties: u1 before u2
        # And when B's bucket has emptied and B posts again at once, it comes back at the tag it left
        # with (24), not 5 before the virtual time (23): no second head start
        broker.enqueue(_message("b10", owner="u2"))
        assert _fetch(broker, 2) == ["a24", "b10"]
    finally:
        server.cleanup()


def test_work_under_way_sent_again_goes_first_in_its_owners_bucket(broker):
    # Given an owner with three messages, the first of which a worker took and gives back (made way)
    for i in range(3):
        broker.enqueue(_message(f"a{i}", owner="u1"))
    [fetched] = broker.ack_and_fetch("q", [], 1)
    assert fetched is not None
    # When it is sent again as work under way
    broker.enqueue_first(Message.decode(fetched))
    # Then it is the owner's next, before the messages sent after it
    assert _fetch(broker, 3) == ["a0", "a1", "a2"]


def test_priority_comes_before_fair_share(broker):
    for i in range(3):
        broker.enqueue(_message(f"a{i}", owner="u1"))
    broker.enqueue(_message("bh", "high", owner="u2"))
    broker.enqueue(_message("ah", "high", owner="u1"))
    fetched = _fetch(broker, 5)
    # Both owners' high messages first (shared fairly between them), then the normal ones
    assert sorted(fetched[:2]) == ["ah", "bh"] and fetched[2:] == ["a0", "a1", "a2"]


def test_weights_share_the_queue_in_proportion(broker):
    for i in range(30):
        broker.enqueue(_message(f"a{i}", owner="u1", weight=3))
        broker.enqueue(_message(f"b{i}", owner="u2", weight=1))
    first = _fetch(broker, 20)
    assert sum(name.startswith("a") for name in first) == 15


def test_owners_share_time_not_job_counts(broker):
    # A's jobs are estimated at 10 s each, B's at 1 s: B gets ten started for each of A's
    for i in range(5):
        broker.enqueue(_message(f"a{i}", owner="u1", cost=10))
    for i in range(30):
        broker.enqueue(_message(f"b{i}", owner="u2", cost=1))
    first = _fetch(broker, 24)
    assert sum(name.startswith("a") for name in first) == 3, first  # a0, then one per ten of b


def test_a_cap_gives_the_slot_to_another_owner_only_while_one_waits(broker, settings):
    settings.QUEUE_Q_MAX_PER_OWNER = 1
    broker.max_per_owner = lambda queue_name: 1  # type: ignore[method-assign]
    for i in range(3):
        broker.enqueue(_message(f"a{i}", owner="u1", weight=5))
    broker.enqueue(_message("b0", owner="u2"))
    # u1's weight would serve it first twice; at its cap, u2 waiting goes next
    assert _fetch(broker, 2) == ["a0", "b0"]
    # Every waiting owner at its cap: the queue stays busy (work-conserving)
    assert _fetch(broker, 2) == ["a1", "a2"]
    assert _running(broker) == {"u1": 3, "u2": 1}


def test_running_counts_are_given_back_on_ack_nack_and_give_back(broker):
    for i in range(4):
        broker.enqueue(_message(f"a{i}", owner="u1"))
    assert _fetch(broker, 4) == ["a0", "a1", "a2", "a3"]
    assert _running(broker) == {"u1": 4}
    broker.ack_and_fetch("q", [_redis_id(broker, "a0")], 0)
    broker.do_ack("q", _redis_id(broker, "a1"))
    broker.do_nack("q", _redis_id(broker, "a2"))
    broker.do_requeue("q", _redis_id(broker, "a3"))  # a consumer's give-back at shutdown
    assert _running(broker) == {"u1": 1}  # a3 is back in the inbox, not yet filed
    assert broker.queue_depth("q") == 1
    assert _fetch(broker, 2) == ["a3"]
    assert _running(broker) == {"u1": 1}
    broker.do_ack("q", _redis_id(broker, "a3"))
    assert _running(broker) == {}
    assert broker.queue_depth("q") == 0


def test_a_run_over_but_not_yet_acknowledged_gives_its_count_back_first(broker):
    # The consumer frees a slot before the job's commit lets it acknowledge the message
    for i in range(2):
        broker.enqueue(_message(f"a{i}", owner="u1"))
    assert _fetch(broker, 1) == ["a0"]
    assert _running(broker) == {"u1": 1}
    [data] = broker.ack_and_fetch("q", [], 1, release=[_redis_id(broker, "a0")])
    assert Message.decode(data).message_id == "a1"
    assert _running(broker) == {"u1": 1}
    # The acknowledgement that follows gives nothing back twice
    broker.ack_many("q", [_redis_id(broker, "a0")])
    assert _running(broker) == {"u1": 1}
    assert broker.client.hexists(broker.messages_key("q"), _redis_id(broker, "a1"))


def test_a_dead_workers_messages_go_back_first_in_their_owners_turn(broker):
    for i in range(4):
        broker.enqueue(_message(f"a{i}", owner="u1"))
    assert _fetch(broker, 2, worker="dead") == ["a0", "a1"]
    # Its heartbeat long gone, another worker's maintenance puts its messages back (Dramatiq's script)
    broker.client.zadd(broker.heartbeats_key, {"dead": 0})
    broker.broker_id = "alive"
    broker.heartbeat("q", maintenance=True)
    assert broker.queue_depth("q") == 4
    fetched = _fetch(broker, 4, worker="alive")
    assert sorted(fetched[:2]) == ["a0", "a1"] and fetched[2:] == ["a2", "a3"]
    # And the dead worker's count went back with its messages
    assert _running(broker) == {"u1": 4}


def test_bulk_enqueue_files_each_message_in_its_owners_bucket(broker):
    broker.enqueue_many([_message(f"a{i}", owner="u1") for i in range(3)] + [_message("b0", owner="u2")])
    assert _fetch(broker, 4) == ["a0", "b0", "a1", "a2"]


def test_a_delayed_message_due_joins_its_owners_turn(broker):
    # The delay queue is a plain list: a worker fetches every delayed message and holds it until due
    for i in range(3):
        broker.enqueue(_message(f"a{i}", owner="u1"))
    broker.enqueue(_message("b0", owner="u2"), delay=10)
    [data] = broker.ack_and_fetch("q.DQ", [], 10)
    delayed = Message.decode(data)
    # ... then, due, puts it on the queue as Dramatiq's worker does, and acknowledges the delayed copy
    broker.enqueue(delayed.copy(queue_name="q", options={"eta": None}))
    broker.do_ack("q.DQ", delayed.options["redis_message_id"])
    assert _fetch(broker, 4) == ["a0", "b0", "a1", "a2"]


def test_queue_depth_and_owner_load(broker):
    for i in range(3):
        broker.enqueue(_message(f"a{i}", owner="u1"))
    broker.enqueue(_message("b0", "high", owner="u2"))
    broker.enqueue(_message("later", owner="u2"), delay=60_000)
    assert broker.queue_depth("q") == 4
    _fetch(broker, 2)
    loads = {load.owner: (load.waiting, load.running) for load in broker.owner_load("q")}
    assert loads == {"u1": (2, 1), "u2": (0, 1)}


def test_purge_forgets_every_owner(broker):
    for i in range(3):
        broker.enqueue(_message(f"a{i}", owner="u1"))
    broker.flush("q")
    assert broker.queue_depth("q") == 0
    assert _fetch(broker, 3) == []


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


def test_others_waiting_sees_only_other_owners_at_the_same_priority_or_above(broker):
    broker.enqueue(_message("a1", owner="a"))
    assert not broker.others_waiting("q", "a", high=False)
    broker.enqueue(_message("b1", owner="b"))
    assert broker.others_waiting("q", "a", high=False)
    # A high job of a's does not make way for b's normal one
    assert not broker.others_waiting("q", "a", high=True)
    broker.enqueue(_message("c1", priority="high", owner="c"))
    assert broker.others_waiting("q", "a", high=True)
    assert _fetch(broker, 3) == ["c1", "a1", "b1"]
    assert not broker.others_waiting("q", "a", high=False)
