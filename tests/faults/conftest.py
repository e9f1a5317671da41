"""Fixtures for the fault suite: private Redis and PostgreSQL instances that tests may stop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from django.conf import settings
from django.utils.module_loading import import_string

from jobs.worker.broker import ConveyorRedisBroker
from tests.faults.private_postgres import PrivatePostgres
from tests.services import PrivateRedis


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    yield server
    server.cleanup()


@pytest.fixture
def broker_on(private_redis: PrivateRedis) -> Iterator[ConveyorRedisBroker]:
    """Point this process's broker at the private Redis for the test."""
    previous = dramatiq.get_broker()
    options: dict[str, Any] = settings.DRAMATIQ_BROKER["OPTIONS"]  # type: ignore[assignment]
    middleware_paths: list[str] = settings.DRAMATIQ_BROKER["MIDDLEWARE"]  # type: ignore[assignment]
    broker = ConveyorRedisBroker(
        url=private_redis.url,
        namespace=options["namespace"],
        heartbeat_timeout=options["heartbeat_timeout"],
        middleware=[import_string(path)() for path in middleware_paths],
    )
    dramatiq.set_broker(broker)
    yield broker
    dramatiq.set_broker(previous)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres().init()
    yield server
    server.cleanup()
