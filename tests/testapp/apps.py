from __future__ import annotations

from django.apps import AppConfig


class TestAppConfig(AppConfig):
    """Job types that only the test suite uses: work that blocks, records or leaks."""

    name = "tests.testapp"
    label = "testapp"

    def ready(self) -> None:
        from tests.testapp import job_types  # noqa: F401
