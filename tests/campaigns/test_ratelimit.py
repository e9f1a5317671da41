"""The Redis limits, against real Redis: the sliding window and the connection slots."""

from __future__ import annotations

import uuid

import pytest

from campaigns.ratelimit import ConnectionSlots, SendRateLimiter


@pytest.fixture
def limiter(clean_redis):
    return SendRateLimiter(limit=5, window_s=30, guard_s=0, key=f"test-limiter-{uuid.uuid4().hex}")


def test_limiter_grants_no_more_than_the_limit_within_a_window(limiter):
    # Given a limit of 5 per window
    # When 3 and then 4 permits are asked for
    first, second = limiter.acquire(3), limiter.acquire(4)
    # Then only 5 are granted in all, and the next ask is told how long to wait
    assert (first.permits, second.permits) == (3, 2)
    refused = limiter.acquire(1)
    assert refused.permits == 0
    assert 0 < refused.retry_after_s <= 30


def test_limiter_grants_again_once_the_window_has_slid(clean_redis):
    from tests.workers import wait_for

    limiter = SendRateLimiter(limit=2, window_s=0.3, guard_s=0, key=f"test-limiter-{uuid.uuid4().hex}")
    assert limiter.acquire(2).permits == 2
    assert limiter.acquire(1).permits == 0
    # When the window has passed, permits come back
    assert wait_for(lambda: limiter.acquire(1).permits, timeout=5, interval=0.05)


def test_limit_of_zero_turns_the_limiter_off(clean_redis):
    limiter = SendRateLimiter(limit=0, window_s=60, guard_s=0)
    assert not limiter.enabled
    assert limiter.acquire(1000).permits == 1000


def test_connection_slots_hold_at_most_their_number_of_leases(clean_redis):
    # Given 2 slots
    slots = ConnectionSlots(slots=2, ttl_s=30)
    a, b, c = (slots.new_lease() for _ in range(3))
    # When three batches ask for one
    # Then the third waits until one is released
    assert slots.hold(a) and slots.hold(b)
    assert not slots.hold(c)
    slots.release(a)
    assert slots.hold(c)
    # And a holder can renew its own lease
    assert slots.hold(b)
