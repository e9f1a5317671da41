from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from tests.factories import UserFactory
from tests.faults import results as fault_results
from tests.s3_server import S3Bucket, S3Server
from tests.web_server import WebServer
from tests.webhooks import WebhookReceiver
from tests.workers import WorkerPool


def pytest_configure(config: pytest.Config) -> None:
    # The controller (or a run without xdist) names the file the fault tests' rows go to; xdist
    # workers inherit it.
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        path = Path(__file__).resolve().parent.parent / "var" / f"fault-results-{os.getpid()}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        os.environ[fault_results.ENV] = str(path)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") is not None:
        return
    path = Path(os.environ.get(fault_results.ENV, ""))
    rows = fault_results.read(path) if path.name else []
    if not rows:
        return
    text = fault_results.table(rows)
    terminalreporter.write_sep("=", "fault scenarios")
    terminalreporter.write_line(text)
    (path.parent / "fault-results.md").write_text(text + "\n", encoding="utf-8")
    path.unlink(missing_ok=True)


def _flush_namespace() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{settings.DRAMATIQ_NAMESPACE}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def clean_redis() -> Iterator[None]:
    """This test's Redis namespace starts empty."""
    _flush_namespace()
    yield
    _flush_namespace()


@pytest.fixture
def pools(clean_redis: None, transactional_db: None) -> Iterator[Callable[..., WorkerPool]]:
    """Start real worker pools; every one is stopped when the test ends."""
    started: list[WorkerPool] = []

    def start(queue: str, **kwargs: Any) -> WorkerPool:
        pool = WorkerPool(queue, **kwargs).start()
        started.append(pool)
        return pool

    yield start
    for pool in started:
        pool.stop()


@pytest.fixture
def web_server(clean_redis: None, transactional_db: None) -> Iterator[WebServer]:
    """A real uvicorn (HTTP + WebSocket) on a free port, on the test database; stopped when the test ends."""
    server = WebServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server (moto_server) on a free port, shared by the session's S3 tests."""
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server, settings: Any) -> Iterator[S3Bucket]:
    """A new bucket on the S3 server; this process's default storage points at it during the test.

    ``env`` is what worker pools and web servers need to use it (pass it as their env).
    """
    from config.file_storage import default_file_storage

    name = s3_server.create_bucket()
    env = s3_server.env(name)
    settings.STORAGES = {**settings.STORAGES, "default": default_file_storage(env)}
    yield S3Bucket(name=name, env=env, server=s3_server)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """A real HTTP server standing in for a webhook (Slack, the pager, Sentry); it records each POST."""
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def user(db: None) -> Any:
    return UserFactory()


@pytest.fixture
def other_user(db: None) -> Any:
    return UserFactory()


#: What a campaign operator is given: staff status alone opens no template or campaign API.
STAFF_PERMISSIONS = (
    "campaigns.view_emailtemplate",
    "campaigns.add_emailtemplate",
    "campaigns.change_emailtemplate",
    "campaigns.add_campaign",
)


@pytest.fixture
def staff(db: None) -> Any:
    from django.contrib.auth.models import Permission

    user: Any = UserFactory(is_staff=True)
    for name in STAFF_PERMISSIONS:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


@pytest.fixture
def default_schedule(db: None) -> Callable[[str], Any]:
    """``default_schedule(name)``: that default schedule as the data migration makes it.

    A transactional test starts from an emptied database, so the row is made
    again here from the migration's own list.
    """
    from importlib import import_module

    from jobs.models.schedule import Schedule

    defaults = {row["name"]: row for row in import_module("jobs.migrations.0003_default_schedules").DEFAULTS}
    # Each domain app's own default schedule (a data migration of that app).
    for module in DOMAIN_SCHEDULE_MIGRATIONS:
        schedule = import_module(module).SCHEDULE
        defaults[schedule["name"]] = schedule

    def get(name: str) -> Any:
        return Schedule.objects.get_or_create(name=name, defaults=defaults[name])[0]

    return get


#: The data migrations in which domain apps create their default schedules.
DOMAIN_SCHEDULE_MIGRATIONS = (
    "campaigns.migrations.0004_daily_digest_schedule",
    "documents.migrations.0002_thumbnail_maintenance_schedule",
    "exports.migrations.0002_weekly_analytics_schedule",
    "exports.migrations.0004_export_expiry_schedule",
)


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def staff_api(staff: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff)
    return client


@pytest.fixture
def user_api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client
