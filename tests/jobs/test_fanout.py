"""Fan-out: a parent finishes when its children have, and a child's failure is only its own."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs.dispatch.services import cancel_job
from jobs.models import Job, JobStatus
from tests.jobs.helpers import reload, start, wait_status, wait_terminal
from tests.workers import wait_for


@pytest.mark.slow
def test_parent_completes_after_all_children_with_its_hooks_result(pools):
    pools("maintenance", threads=1)
    pools("thumbnails", threads=4)
    parent = start("test-fanout", children=6)
    wait_status(parent, JobStatus.COMPLETED, timeout=40)
    children = Job.objects.filter(parent=parent)
    assert children.count() == 6
    assert set(children.values_list("status", flat=True)) == {JobStatus.COMPLETED}
    assert parent.result == {"collected": 6, "lost": 0}
    assert parent.progress == 100
    assert parent.finished_at >= max(child.finished_at for child in children)


@pytest.mark.slow
def test_a_failing_child_does_not_fail_the_parent(pools):
    pools("maintenance", threads=1)
    pools("thumbnails", threads=2)
    parent = wait_terminal(start("test-fanout", children=3, fail=[1]), timeout=40)
    assert parent.status == JobStatus.COMPLETED
    assert parent.result == {"collected": 2, "lost": 1}
    assert parent.progress_data["failed"] == 1
    assert parent.progress_data["message"] == "3 of 3 pieces"


@pytest.mark.slow
def test_parent_progress_counts_finished_children(pools):
    pools("maintenance", threads=1)
    parent = start("test-fanout", children=4)
    # No thumbnails worker yet: the parent waits with its children queued.
    wait_for(lambda: reload(parent).progress_data.get("total") == 4, what="the fan-out")
    assert parent.status == JobStatus.ACTIVE and parent.progress == 10
    pools("thumbnails", threads=1)
    wait_status(parent, JobStatus.COMPLETED, timeout=40)


@pytest.mark.slow
def test_cancelling_a_waiting_parent_cancels_its_children(pools):
    pools("maintenance", threads=1)
    parent = start("test-fanout", children=3)
    wait_for(lambda: reload(parent).progress_data.get("total") == 3, what="the fan-out")
    cancel_job(parent)
    assert reload(parent).status == JobStatus.CANCELLED
    assert set(Job.objects.filter(parent=parent).values_list("status", flat=True)) == {JobStatus.CANCELLED}


@pytest.mark.slow
def test_reconciler_leaves_a_parent_waiting_for_its_children_alone(pools):
    from jobs.ops.reconciler import reconcile_once

    # Given a parent waiting for children that no worker is taking yet
    pools("maintenance", threads=1)
    parent = start("test-fanout", children=2)
    wait_for(lambda: reload(parent).progress_data.get("total") == 2, what="the fan-out")
    Job.objects.filter(id=parent.id).update(updated_at=parent.updated_at - timedelta(minutes=10))
    # When the reconciler passes long after the grace period
    report = reconcile_once()
    # Then the parent is not requeued (it would fan out a second time)
    assert report.lost_requeued == 0
    assert reload(parent).status == JobStatus.ACTIVE
    assert Job.objects.filter(parent=parent).count() == 2
