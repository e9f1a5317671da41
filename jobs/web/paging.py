"""Pages of a table of millions of jobs without counting it: the console's list and ``GET /api/jobs``.

An exact ``COUNT(*)`` of a filter that matches a million rows reads a million
rows on every page view (half a second at 2,000,000 jobs). Pages need a number
of pages, not an exact one: up to ``EXACT_UP_TO`` matches are counted exactly,
a larger result set is given PostgreSQL's own estimate of its size (the
planner's row estimate, from the table's statistics: no rows read).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property
from rest_framework.pagination import PageNumberPagination

#: Results counted exactly up to this many; beyond it, estimated.
EXACT_UP_TO = 10_000


def planner_row_estimate(queryset: QuerySet[Any]) -> int:
    """PostgreSQL's estimate of the rows ``queryset`` returns (``EXPLAIN``: plans, reads no rows)."""
    plan = json.loads(queryset.order_by().explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


class BoundedCountPaginator(Paginator):
    """Counts exactly up to ``EXACT_UP_TO`` results, estimates above (PostgreSQL; elsewhere always exact).

    An estimate can be off either way: the last pages of a huge list may be
    empty, or rows past them unreachable by page number; a filter narrows it.
    """

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet) or connections[queryset.db].vendor != "postgresql":
            return super().count
        # COUNT(*) over a LIMIT subquery: reads at most EXACT_UP_TO + 1 rows.
        bounded = queryset.order_by()[: EXACT_UP_TO + 1].count()
        if bounded <= EXACT_UP_TO:
            return bounded
        return max(planner_row_estimate(queryset), EXACT_UP_TO + 1)


class BoundedCountPagination(PageNumberPagination):
    """DRF's page-number pagination (same ``count``/``next``/``previous``/``results``), counted as above."""

    django_paginator_class = BoundedCountPaginator
