"""The queue table's per-queue overrides, as the worker pools read them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from jobs.core.queues import get_queue, reload_queue_table
from jobs.ops.supervisor import pool_spec


@pytest.fixture(autouse=True)
def fresh_table() -> Iterator[None]:
    reload_queue_table()
    yield
    reload_queue_table()


def test_a_pool_holds_one_message_per_thread_by_default():
    policy = get_queue("thumbnails")
    assert policy.held_messages == policy.threads == 4
    assert pool_spec(policy, nice=0).env["dramatiq_queue_prefetch"] == "4"


@override_settings(QUEUE_MAINTENANCE_THREADS=8, QUEUE_MAINTENANCE_PREFETCH=16)
def test_a_queue_of_short_jobs_can_hold_more_messages_than_threads():
    policy = get_queue("maintenance")
    assert (policy.threads, policy.held_messages) == (8, 16)
    assert pool_spec(policy, nice=0).env["dramatiq_queue_prefetch"] == "16"


@override_settings(QUEUE_THUMBNAILS_PREFETCH=1)
def test_a_prefetch_below_the_thread_count_still_feeds_every_thread():
    assert get_queue("thumbnails").held_messages == 4


@override_settings(QUEUE_THUMBNAILS_PREFETCH="lots")
def test_a_prefetch_that_is_not_a_number_is_refused_by_name():
    with pytest.raises(ValueError, match="QUEUE_THUMBNAILS_PREFETCH must be an integer"):
        get_queue("thumbnails")


def test_the_email_pool_runs_a_process_per_smtp_connection():
    policy = get_queue("email-sender")
    assert (policy.processes, policy.threads, policy.concurrency) == (5, 1, 5)


@override_settings(QUEUE_EMAIL_SENDER_CONCURRENCY=8)
def test_concurrency_adds_processes_to_a_pool_of_single_threaded_processes():
    policy = get_queue("email-sender")
    assert (policy.processes, policy.threads) == (8, 1)


@override_settings(QUEUE_THUMBNAILS_CONCURRENCY=6)
def test_concurrency_adds_threads_to_a_one_process_pool():
    policy = get_queue("thumbnails")
    assert (policy.processes, policy.threads) == (1, 6)
