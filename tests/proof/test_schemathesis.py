"""Schemathesis against ``/api/schema/``: no operation answers 5xx, whoever calls it with whatever input.

Every operation of the schema is driven in-process (WSGI) with a bounded number
of generated requests, valid and invalid, for a staff token and for a plain
user's token. Path ids are generated, or one of the caller's own objects, or
another user's, so the handlers behind the 404 are exercised too. No worker
pool runs: the database is not transactional, so jobs started here are never
sent to Redis.

CI runs a fixed, reproducible set of examples. To explore further, raise
``PROOF_SCHEMATHESIS_EXAMPLES`` and set ``PROOF_SCHEMATHESIS_RANDOM=1`` for a
fresh random draw on each run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from jobs.dispatch.registry import job_types
from tests.proof.conftest import World

pytestmark = pytest.mark.slow

# Generated requests per operation, per generation mode (valid and invalid input).
EXAMPLES_PER_OPERATION = int(os.environ.get("PROOF_SCHEMATHESIS_EXAMPLES", "15"))
RANDOM_DRAW = os.environ.get("PROOF_SCHEMATHESIS_RANDOM") == "1"
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(autouse=True)
def keep_test_connection() -> Iterator[None]:
    """Requests run inside the test's transaction: do not close its connection (Django's test client does the same)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _fixed_path_parameters(path: str, world: World) -> list[dict[str, Any]]:
    """Path parameters pointing at real rows: user A's, user B's; and every registered job type."""
    resource = path.split("/")[2]
    choices: list[dict[str, Any]] = []
    if "{id}" in path and resource in world.user_a.ids:
        for holdings in (world.user_a, world.user_b):
            fixed: dict[str, Any] = {"id": holdings.ids[resource]}
            if resource == "jobs" and path.endswith("/retry"):
                fixed["id"] = str(holdings.failed_job.id)
            choices.append(fixed)
    if "{id}" in path and resource == "email-templates":
        choices.append({"id": world.template.id})
    if "{job_type}" in path:
        choices.extend({"job_type": kind.name} for kind in job_types().values() if kind.serializer is not None)
    return choices


def _strategy(operation: Any, world: World) -> Any:
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(generation_mode=mode))
        for fixed in _fixed_path_parameters(operation.path, world):
            strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    return st.one_of(strategies)


def _server_errors(world: World, token: str) -> list[str]:
    """Drive every operation of the schema; the failures found, one report per operation."""
    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    headers = {"Authorization": f"Token {token}"}
    failures: list[str] = []
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert operations, "the schema lists no operation"
    assert len(operations) == len(results), [result.err() for result in results if isinstance(result, Err)]
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION * 2,
            deadline=None,
            database=None,
            derandomize=not RANDOM_DRAW,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=_strategy(operation, world))
        def exercise(case: Any) -> None:
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            exercise()
        except Exception as exc:  # noqa: BLE001 - every operation's failure is reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return failures


def test_no_operation_answers_a_server_error_to_staff(world: World) -> None:
    # Given a staff token and the seeded rows of two users
    # When schemathesis drives every operation with valid and invalid input
    failures = _server_errors(world, world.staff_token)
    # Then no answer is a 5xx or breaks the documented response schema
    assert not failures, "\n\n".join(failures)


def test_no_operation_answers_a_server_error_to_a_plain_user(world: World) -> None:
    # Given user A's token (not staff) and the seeded rows of two users
    # When schemathesis drives every operation with valid and invalid input
    failures = _server_errors(world, world.user_a.token)
    # Then no answer is a 5xx or breaks the documented response schema
    assert not failures, "\n\n".join(failures)
