"""The job list at millions of rows (issue 18): bounded counts, indexed search, and no index that status changes write.

The sizes here are small; what is checked is that the answers stay right
with the cheap paths (bench/scale.py measures their speed at 2,000,000 jobs).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, cast
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobStatus
from jobs.web import paging
from jobs.web.admin.search import id_prefix_range, search_jobs
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/jobs/job/"


def _job(status: str = JobStatus.COMPLETED, *, days_ago: float = 0, job_type: str = "canary", **fields: Any) -> Job:
    job = build_job(job_type=job_type, queue="maintenance", actor="canary_maintenance", arguments={})
    job.status = status
    job.created_at = timezone.now() - timedelta(days=days_ago)
    for key, value in fields.items():
        setattr(job, key, value)
    return create_jobs([job])[0]


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(cast(Any, UserFactory(is_staff=True, is_superuser=True)))
    return client


def _listed(client: Client, query: str) -> set[str]:
    response = client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    return {str(job.pk) for job in response.context["cl"].result_list}


# -- search ---------------------------------------------------------------------------------------


def test_search_by_a_whole_id_finds_that_job_of_any_age(admin_client):
    old = _job(days_ago=400)
    _job()
    assert _listed(admin_client, f"q={old.pk}") == {str(old.pk)}


def test_search_by_the_first_characters_of_an_id_finds_the_jobs_whose_id_starts_so(admin_client):
    # Given two old jobs whose ids share their first 8 hex digits, and one that does not
    first = _job(days_ago=400, id=uuid.UUID("abcdef01-0000-4000-8000-000000000001"))
    second = _job(days_ago=200, id=uuid.UUID("abcdef01-ffff-4fff-bfff-ffffffffffff"))
    _job(id=uuid.UUID("abcdef02-0000-4000-8000-000000000000"))
    # Then its start, with or without dashes, finds exactly the two
    assert _listed(admin_client, "q=abcdef01") == {str(first.pk), str(second.pk)}
    assert _listed(admin_client, "q=ABCDEF01-ffff") == {str(second.pk)}
    # And fewer than 4 hex digits is not an id's start
    assert id_prefix_range("abc") is None and id_prefix_range("abcd") is not None


def test_search_by_error_text_finds_failed_jobs_within_the_bound_and_retrying_jobs(admin_client, settings):
    settings.JOBS_SEARCH_RECENT_DAYS = 7
    # Given the same error text on failed jobs inside and beyond the bound, a retrying job and others
    recent_failed = _job(JobStatus.FAILED, days_ago=6, error_message="Disk quota exceeded on /var/spool")
    new_failed = _job(JobStatus.FAILED, error_message="disk QUOTA exceeded")
    old_failed = _job(JobStatus.FAILED, days_ago=90, error_message="disk quota exceeded")
    retrying = _job(JobStatus.RETRYING, days_ago=30, error_message="disk quota exceeded (attempt 1)")
    _job(JobStatus.CANCELLED, error_message="disk quota exceeded, cancelled")
    _job(JobStatus.FAILED, error_message="something else")
    # Then the failed ones within the bound are found (case-insensitively), and the retrying one
    assert _listed(admin_client, "q=disk+quota+exceeded") == {
        str(recent_failed.pk),
        str(new_failed.pk),
        str(retrying.pk),
    }
    # And beyond the bound, a failed job is found when a "created at" date filter reaches back to it
    since = quote((timezone.now() - timedelta(days=100)).isoformat(timespec="seconds"))
    assert str(old_failed.pk) in _listed(admin_client, f"q=disk+quota+exceeded&created_at__gte={since}")
    # Or when the bound grows
    settings.JOBS_SEARCH_RECENT_DAYS = 100
    assert str(old_failed.pk) in _listed(admin_client, "q=disk+quota+exceeded")


def test_arguments_are_not_searched(admin_client):
    # An ILIKE over arguments would read every row (jobs/web/admin/search.py); the id finds the job.
    job = _job(days_ago=1, arguments={"document_id": "invoice-4711"})
    assert _listed(admin_client, "q=invoice-4711") == set()
    assert _listed(admin_client, f"q={job.pk}") == {str(job.pk)}


def test_the_page_says_what_the_search_covers_and_its_bound(admin_client, settings):
    settings.JOBS_SEARCH_RECENT_DAYS = 3
    page = admin_client.get(CHANGELIST).content.decode()
    assert "failed jobs created in the last 3 days (JOBS_SEARCH_RECENT_DAYS)" in page
    assert "A job id or its first characters (any age)" in page


def test_search_by_error_text_of_failed_jobs_uses_the_partial_trigram_index():
    # Given enough recent failed jobs that reading them all costs more than the index (20,000 of the
    # last 2 days, one SQL insert)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO jobs_job (id, type, queue, actor, arguments, priority, status, progress, progress_data,
                                  error_message, traceback, attempts, max_attempts, worker_id, created_at,
                                  finished_at, updated_at)
            SELECT gen_random_uuid(), 'canary', 'maintenance', 'canary_maintenance', '{}', 'normal',
                   'failed', 100, '{}', 'CorruptPdf: xref table not found in document ' || n,
                   '', 1, 1, '',
                   now() - n * interval '10 seconds', now(), now()
            FROM generate_series(1, 20000) AS n
            """
        )
        cursor.execute("ANALYZE jobs_job")
    # Then the search's plan reads the index: its expressions are the ones Django's lookups write
    plan = search_jobs(Job.objects.all(), "mailbox unavailable").explain()
    assert "Bitmap Index Scan on job_failed_error_trgm" in plan, plan


# -- indexes --------------------------------------------------------------------------------------

#: The job table's indexes that hold every row, as they were before issue 18. A non-partial index
#: is written by every status change (status is indexed, so no update of a job is HOT).
INDEXES_ON_EVERY_ROW = {"jobs_job_pkey", "job_status_queue", "job_owner_created", "job_type_finished", "job_created"}


def test_no_index_on_every_job_row_is_added():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs_job'")
        indexes = dict(cursor.fetchall())
    on_every_row = {name for name, definition in indexes.items() if " WHERE " not in definition}
    assert on_every_row == INDEXES_ON_EVERY_ROW
    # The search's index holds failed jobs only: a job enters it once, when it fails.
    assert "WHERE ((status)::text = 'failed'::text)" in indexes["job_failed_error_trgm"]
    assert "gin (created_at, upper(error_message) gin_trgm_ops)" in indexes["job_failed_error_trgm"]


# -- counts, filters and the API list --------------------------------------------------------------


def test_lists_count_exactly_up_to_the_bound_and_estimate_beyond(admin_client, monkeypatch):
    for _ in range(4):
        _job()
    failed = _job(JobStatus.FAILED)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    monkeypatch.setattr(paging, "EXACT_UP_TO", 2)  # as if the table were huge
    # Over the bound: the planner's estimate (never below the bound), no count of the rows
    everything = admin_client.get(CHANGELIST).context["cl"]
    estimate = paging.planner_row_estimate(Job.objects.all())
    assert everything.paginator.count == max(estimate, 3) and len(everything.result_list) == 5
    # Within it: exact, and the right rows
    filtered = admin_client.get(f"{CHANGELIST}?status__exact=failed").context["cl"]
    assert filtered.paginator.count == 1 and [job.pk for job in filtered.result_list] == [failed.pk]


def test_status_and_type_filters_list_the_right_jobs_newest_first(admin_client):
    older = _job(JobStatus.FAILED, days_ago=2, job_type="csv-export")
    newer = _job(JobStatus.FAILED, days_ago=1, job_type="csv-export")
    _job(JobStatus.COMPLETED, job_type="csv-export")
    _job(JobStatus.FAILED)
    response = admin_client.get(f"{CHANGELIST}?status__exact=failed&type=csv-export")
    assert [job.pk for job in response.context["cl"].result_list] == [newer.pk, older.pk]
    assert _listed(admin_client, "type=csv-export") == {str(older.pk), str(newer.pk)} | {
        str(job.pk) for job in Job.objects.filter(type="csv-export", status=JobStatus.COMPLETED)
    }


def test_owner_filter_offers_the_users_who_own_jobs_only(admin_client):
    owner, idle = UserFactory(), UserFactory()
    owned = _job(owner=owner)
    _job()
    response = admin_client.get(CHANGELIST)
    owner_filter = next(spec for spec in response.context["cl"].filter_specs if spec.title == "owner")
    offered = {str(pk) for pk, _ in owner_filter.lookup_choices}
    assert str(owner.pk) in offered and str(idle.pk) not in offered
    assert _listed(admin_client, f"owner__id__exact={owner.pk}") == {str(owned.pk)}


def test_api_list_counts_exactly_within_the_bound_and_estimates_beyond(staff_api, monkeypatch):
    jobs = [_job(days_ago=index) for index in range(3)]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    body = staff_api.get("/api/jobs").json()
    assert body["count"] == 3
    assert [row["id"] for row in body["results"]] == [str(job.pk) for job in jobs]
    monkeypatch.setattr(paging, "EXACT_UP_TO", 1)
    body = staff_api.get("/api/jobs", {"status": "completed"}).json()
    assert body["count"] == max(paging.planner_row_estimate(Job.objects.filter(status="completed")), 2)
    assert [row["id"] for row in body["results"]] == [str(job.pk) for job in jobs]


def test_the_list_never_counts_facets(admin_client):
    # A facet is a COUNT per filter choice: over millions of jobs, one per status, queue, type...
    _job()
    response = admin_client.get(f"{CHANGELIST}?_facets=True")
    assert response.status_code == 200 and response.context["cl"].add_facets is False
