"""Fair dispatch between owners, proven with real worker processes on Redis and PostgreSQL.

Each job here is a ``test-record-run`` job: it appends its id to a Redis
list as it starts (``tests.jobs.helpers.recorded``), so with one worker
thread that list is the order the queue handed the jobs out in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from django.db import transaction

from jobs.core.queues import reload_queue_table
from jobs.dispatch.fairness import forget_weights
from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobPriority, JobStatus, ShareWeight
from tests.factories import UserFactory
from tests.faults.helpers import statuses, wait_all_completed
from tests.jobs.helpers import recorded, wait_status
from tests.workers import wait_for

pytestmark = pytest.mark.slow

#: The capped tests' queue; the record-run actor exists on maintenance, thumbnails and csv-export.
CAPPED_QUEUE = "thumbnails"
CAP_SETTING = "QUEUE_THUMBNAILS_MAX_PER_OWNER"


def _post(owner: Any, count: int, *, queue: str = "maintenance", seconds: float = 0.0, priority: str = "") -> list[str]:
    """``count`` record-run jobs of ``owner`` (None: the system), sent in one batch after commit; their ids."""
    rows = [
        build_job(
            job_type="test-record-run",
            queue=queue,
            actor="test_record_run_" + queue.replace("-", "_"),
            arguments={"queue": queue, "seconds": seconds},
            owner=owner,
            priority=priority or JobPriority.NORMAL,
        )
        for _ in range(count)
    ]
    with transaction.atomic():
        jobs = create_jobs(rows)
    return [str(job.id) for job in jobs]


def _block(queue: str = "maintenance", seconds: float = 1.5) -> str:
    """A system job that holds a one-thread pool's only slot while the test posts the jobs it orders."""
    [blocker] = _post(None, 1, queue=queue, seconds=seconds)
    wait_status(Job.objects.get(id=blocker), JobStatus.ACTIVE)
    return blocker


def _runs(ids: list[str]) -> list[str]:
    """The jobs among ``ids`` in the order they started (each run once; a rerun after a kill is dropped)."""
    wanted = set(ids)
    seen: list[str] = []
    for job_id in recorded("runs"):
        if job_id in wanted and job_id not in seen:
            seen.append(job_id)
    return seen


def _running_counts(queue: str) -> dict[str, int]:
    """The fair queue's running count per owner (``<namespace>:<queue>.run``), zeros left out."""
    broker: Any = dramatiq.get_broker()
    raw: dict[bytes, bytes] = broker.client.hgetall(broker.queue_key(queue) + ".run")
    counts = {owner.decode(): int(count) for owner, count in raw.items()}
    return {owner: count for owner, count in counts.items() if count}


@pytest.fixture
def capped(settings: Any) -> Iterator[dict[str, str]]:
    """A cap of one running job per owner on the capped queue: here, and in the env for its pool."""
    setattr(settings, CAP_SETTING, 1)
    reload_queue_table()
    yield {CAP_SETTING: "1"}
    delattr(settings, CAP_SETTING)
    reload_queue_table()


def test_a_second_owner_is_served_in_turn_not_behind_the_first_owners_backlog(pools):
    # Given one worker thread, busy, and two customers
    pools("maintenance", threads=1)
    a, b = UserFactory(), UserFactory()
    _block()
    # When A posts twelve jobs, and then B posts four
    a_jobs = _post(a, 12)
    b_jobs = _post(b, 4)
    wait_all_completed(a_jobs + b_jobs, timeout=60)
    # Then B's jobs start interleaved with A's: the k-th of B's among the first 2k+2 runs
    order = _runs(a_jobs + b_jobs)
    assert len(order) == 16
    positions = [order.index(job_id) for job_id in b_jobs]
    assert all(position <= 2 * k + 1 for k, position in enumerate(positions)), positions
    # And each owner's own jobs start in the order they were posted
    assert [job_id for job_id in order if job_id in a_jobs] == a_jobs
    assert [job_id for job_id in order if job_id in b_jobs] == b_jobs


def test_one_owners_jobs_start_in_the_order_they_were_posted(pools):
    pools("maintenance", threads=1)
    a = UserFactory()
    _block()
    # Posted in three batches while the only thread is busy
    jobs = _post(a, 5) + _post(a, 1) + _post(a, 6)
    wait_all_completed(jobs, timeout=60)
    assert _runs(jobs) == jobs


def test_high_priority_job_of_one_owner_starts_before_another_owners_waiting_jobs(pools):
    # Given one busy worker thread, and normal jobs of A and then of B waiting
    pools("maintenance", threads=1)
    a, b = UserFactory(), UserFactory()
    _block()
    a_normal = _post(a, 3)
    b_normal = _post(b, 4)
    # When A posts a high-priority job after them
    [a_high] = _post(a, 1, priority=JobPriority.HIGH)
    wait_all_completed([*a_normal, *b_normal, a_high], timeout=60)
    # Then it is the first to start, before every one of B's (and A's own) normal jobs
    order = _runs([*a_normal, *b_normal, a_high])
    assert order[0] == a_high, order


def test_an_owner_alone_on_a_capped_queue_uses_every_slot(pools, capped):
    # Given a pool of three threads on a queue that caps each owner at one running job
    pools(CAPPED_QUEUE, threads=3, env=capped)
    a = UserFactory()
    # When A alone posts six jobs
    jobs = _post(a, 6, queue=CAPPED_QUEUE, seconds=1.0)
    # Then A runs three at once: the cap yields while nobody else waits
    most = 0
    while Job.objects.filter(id__in=jobs, status__in=[JobStatus.QUEUED, JobStatus.ACTIVE]).exists():
        most = max(most, Job.objects.filter(id__in=jobs, status=JobStatus.ACTIVE).count())
        time.sleep(0.05)
    assert statuses(jobs) == {JobStatus.COMPLETED: 6}
    assert most == 3


def _blocked_by_system_jobs(queue: str, slots: int) -> list[str]:
    """Fill every slot of a new pool with a system job, once its start-up canary has run."""
    wait_for(
        lambda: Job.objects.filter(queue=queue, type="canary", status=JobStatus.COMPLETED).exists(),
        timeout=30,
        what="the pool's start-up canary to run",
    )
    blockers = _post(None, slots, queue=queue, seconds=1.0)
    wait_for(lambda: statuses(blockers) == {JobStatus.ACTIVE: slots}, what="the blockers to hold every slot")
    return blockers


def test_a_capped_owner_never_holds_every_slot_while_another_owner_waits(pools, capped):
    # Given a pool of two threads on a queue that caps each owner at one running job, busy with system jobs
    # (two threads, not three: with three slots and two owners the third slot goes past a cap by design,
    # to whichever owner is first, when both are at their cap)
    pools(CAPPED_QUEUE, threads=2, env=capped)
    a, b = UserFactory(), UserFactory()
    _blocked_by_system_jobs(CAPPED_QUEUE, 2)
    # When A posts many long jobs and B a few short ones
    a_jobs = _post(a, 6, queue=CAPPED_QUEUE, seconds=1.0)
    b_jobs = _post(b, 4, queue=CAPPED_QUEUE, seconds=0.5)
    a_bucket, b_bucket = f"u{a.pk}", f"u{b.pk}"
    broker: Any = dramatiq.get_broker()
    samples: list[tuple[int, int, int]] = []
    while Job.objects.filter(id__in=a_jobs + b_jobs, status__in=[JobStatus.QUEUED, JobStatus.ACTIVE]).exists():
        # One Lua script: an atomic view of the queue's waiting and running messages per owner
        loads = {load.owner: load for load in broker.owner_load(CAPPED_QUEUE)}
        a_load, b_load = loads.get(a_bucket), loads.get(b_bucket)
        samples.append(
            (a_load.running if a_load else 0, b_load.waiting if b_load else 0, b_load.running if b_load else 0)
        )
        time.sleep(0.02)
    assert statuses(a_jobs + b_jobs) == {JobStatus.COMPLETED: 10}
    # Then A never held both slots while B had jobs waiting and none running:
    # with two slots, the cap lets A past one only when B runs one
    assert any(b_waiting for _, b_waiting, _ in samples), "B never waited: the run was not observed"
    over_cap = sorted({sample for sample in samples if sample[1] and not sample[2] and sample[0] > 1})
    assert not over_cap, f"(A running, B waiting, B running) seen: {over_cap}"
    # And B's short jobs were not left to the end: B keeps one slot, so all four start before A's third
    order = _runs(a_jobs + b_jobs)
    owners = ["A" if job_id in a_jobs else "B" for job_id in order]
    assert max(order.index(job_id) for job_id in b_jobs) < order.index(a_jobs[2]), owners


@pytest.fixture
def fresh_weights() -> Iterator[None]:
    """This process reads weights anew (it sends the messages, so it is the one that reads them)."""
    forget_weights()
    yield
    forget_weights()


def test_an_owner_of_weight_three_gets_three_starts_for_each_of_a_weight_one_owner(pools, fresh_weights):
    # Given A with a fair-share weight of 3 and B with the default of 1
    pools("maintenance", threads=1)
    a, b = UserFactory(), UserFactory()
    ShareWeight.objects.create(user=a, weight=3)
    _block()
    # When both post twenty jobs at once
    a_jobs = _post(a, 20)
    b_jobs = _post(b, 20)
    wait_all_completed(a_jobs + b_jobs, timeout=90)
    # Then about three in four of the first sixteen starts are A's
    first = _runs(a_jobs + b_jobs)[:16]
    a_share = sum(job_id in a_jobs for job_id in first)
    assert 10 <= a_share <= 14, first


@pytest.mark.fault
def test_after_a_worker_is_killed_no_job_is_lost_and_waiting_jobs_keep_their_owners_order(pools):
    # Given two owners' jobs being worked through by a pool of two threads
    queue = CAPPED_QUEUE
    pool = pools(queue, threads=2)
    a, b = UserFactory(), UserFactory()
    a_jobs = _post(a, 10, queue=queue, seconds=0.3)
    b_jobs = _post(b, 10, queue=queue, seconds=0.3)
    wait_for(lambda: len(recorded("runs")) >= 4, timeout=30, what="the run to be under way")
    # When the worker process is killed with SIGKILL mid-run, and the pool is started again
    pool.kill_worker()
    pool.wait(timeout=30)
    started_before = set(recorded("runs"))
    in_flight = dramatiq.get_broker().in_flight_message_ids().get(queue, set())  # type: ignore[attr-defined]
    assert in_flight, "the killed worker held no message: the kill did not land mid-run"
    never_fetched = [job_id for job_id in a_jobs + b_jobs if job_id not in started_before | in_flight]
    pools(queue, threads=2)
    # Then every job completes
    wait_all_completed(a_jobs + b_jobs, timeout=60)
    # And each owner's jobs that were never fetched started in the order they were posted
    for owner_jobs in (a_jobs, b_jobs):
        waiting = [job_id for job_id in owner_jobs if job_id in never_fetched]
        assert waiting, "every job of an owner was fetched before the kill"
        assert _runs(waiting) == waiting
    # And no running count is left behind once the last acknowledgement is sent
    wait_for(lambda: not _running_counts(queue), timeout=10, what=f"no running count ({_running_counts(queue)})")


@pytest.mark.fault
def test_messages_given_back_on_shutdown_leave_no_running_count(pools):
    # Given a one-thread pool that holds up to eight messages: one job running, others fetched and waiting
    queue = "maintenance"
    prefetch = {"dramatiq_queue_prefetch": "8"}
    pool = pools(queue, threads=1, env=prefetch)
    a, b = UserFactory(), UserFactory()
    [running] = _post(a, 1, seconds=1.5)
    wait_status(Job.objects.get(id=running), JobStatus.ACTIVE)
    held = _post(a, 2) + _post(b, 2)
    wait_for(
        lambda: Job.objects.filter(id__in=held, status=JobStatus.ACTIVE).count() == len(held),
        timeout=20,
        what="the waiting jobs to be fetched (claimed ahead)",
    )
    assert _runs([running, *held]) == [running]
    # When the pool is stopped while they wait (SIGTERM: the consumer gives them back)
    pool.terminate()
    pool.wait(timeout=60)
    assert Job.objects.get(id=running).status == JobStatus.COMPLETED
    assert statuses(held) == {JobStatus.QUEUED: len(held)}
    # Then the next pool runs each of them, and no running count is left behind
    pools(queue, threads=1, env=prefetch)
    wait_all_completed(held, timeout=60)
    assert sorted(recorded("done")) == sorted([running, *held])
    wait_for(lambda: not _running_counts(queue), timeout=10, what=f"no running count ({_running_counts(queue)})")


@pytest.mark.django_db
def test_a_fan_out_parent_is_charged_its_own_run_not_its_childrens_work():
    from jobs.dispatch.fairness import FAN_OUT_RUN_COST_S, job_cost

    # A parent's estimate covers its children, which are charged as they are sent
    parent = Job(type="test-fanout", estimated_duration_s=600.0)
    child = Job(type="test-record-run", estimated_duration_s=600.0)
    assert job_cost(parent) == FAN_OUT_RUN_COST_S
    assert job_cost(child) == 600.0
