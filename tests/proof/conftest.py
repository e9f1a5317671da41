"""Seed rows for the proof tests: two users with one of everything each, and a staff operator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from campaigns.models import EmailTemplate
from exports.models import Export
from jobs.models import Job, JobStatus
from tests.factories import DocumentFactory, EmailTemplateFactory, UserFactory, api_token


@dataclass
class Holdings:
    """One user's rows, by the API resource they are reached through."""

    user: Any
    token: str
    queued_job: Job
    failed_job: Job
    document: Any
    export: Export
    ids: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    user_a: Holdings
    user_b: Holdings
    staff: Any
    staff_token: str
    template: EmailTemplate


def _job(owner: Any, status: str) -> Job:
    return Job.objects.create(
        type="canary",
        queue="maintenance",
        actor="canary",
        owner=owner,
        status=status,
        arguments={"queue": "maintenance"},
        error_message="boom" if status == JobStatus.FAILED else "",
    )


def _holdings(user: Any) -> Holdings:
    holdings = Holdings(
        user=user,
        token=api_token(user),
        queued_job=_job(user, JobStatus.QUEUED),
        failed_job=_job(user, JobStatus.FAILED),
        document=DocumentFactory(owner=user),
        export=Export.objects.create(owner=user, dataset="jobs", query_params={}),
    )
    holdings.ids = {
        "jobs": str(holdings.queued_job.id),
        "documents": str(holdings.document.id),
        "exports": str(holdings.export.id),
    }
    return holdings


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    """Uploaded and generated files go to this test's own directory."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def world(db: None) -> World:
    """User A and user B own a queued job, a failed job, a document and an export each; staff owns nothing."""
    staff: Any = UserFactory(is_staff=True, is_superuser=True)
    return World(
        user_a=_holdings(UserFactory()),
        user_b=_holdings(UserFactory()),
        staff=staff,
        staff_token=api_token(staff),
        template=cast(EmailTemplate, EmailTemplateFactory()),
    )
