"""Which database the suite runs on: CI runs it on PostgreSQL, and an end-to-end subset on SQLite."""

from __future__ import annotations

import pytest
from django.db import connection


def postgresql_only(reason: str) -> pytest.MarkDecorator:
    """Skip the test on other databases: it tests a PostgreSQL feature (``reason`` names it)."""
    return pytest.mark.skipif(connection.vendor != "postgresql", reason=f"PostgreSQL only: {reason}")
