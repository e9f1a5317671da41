"""The datasets a user can export, each with whitelisted filters, fields and ordering.

A request names a dataset and, optionally, filters, fields and an ordering.
Every name is checked against the dataset's whitelist (an unknown one is an
``InvalidExportQuery`` naming it) and every filter value is parsed to its
declared type. The SQL is then put together only from text written in this
module (column expressions, table names) and the values travel as bound
parameters: no user input ever becomes SQL text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from exports.exceptions import InvalidExportQuery

#: Most values an ``in`` filter accepts.
MAX_IN_VALUES = 100


# -- value types -----------------------------------------------------------------
@dataclass(frozen=True)
class ValueType:
    """Parses a JSON filter value; ``ValueError`` carries the problem to the user."""

    name: str
    parse: Callable[[Any], Any]


def _text(raw: Any) -> str:
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise ValueError("must be a string")
    value = str(raw)
    if len(value) > 200:
        raise ValueError("at most 200 characters")
    if "\x00" in value:
        # PostgreSQL can store a NUL neither in text nor in jsonb: the request would end in a 500.
        raise ValueError("must not contain NUL characters")
    return value


def _integer(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("must be an integer")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ValueError("must be an integer") from None


def _datetime(raw: Any) -> str:
    parsed = parse_datetime(raw) if isinstance(raw, str) else None
    if parsed is None:
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T00:00:00Z")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # Kept as ISO text so that the validated query stores as JSON.
    return parsed.astimezone(UTC).isoformat()


def _choice(choices: Sequence[str]) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return str(raw)

    return parse


TEXT = ValueType("text", _text)
INTEGER = ValueType("integer", _integer)
DATETIME = ValueType("datetime", _datetime)


def choice(choices: Sequence[str]) -> ValueType:
    return ValueType("choice", _choice(list(choices)))


# -- columns, filters, datasets ------------------------------------------------------
SqlText = str | Mapping[str, str]


def _for_vendor(sql: SqlText, vendor: str) -> str:
    if isinstance(sql, str):
        return sql
    return sql.get(vendor) or sql["default"]


@dataclass(frozen=True)
class Column:
    """An exported field: its SQL expression (per database vendor when they differ)."""

    sql: SqlText
    #: "datetime" columns are turned into naive UTC datetimes for Excel.
    kind: str = "text"


@dataclass(frozen=True)
class Filter:
    """A whitelisted filter: which expression it compares, how, and the value's type."""

    sql: SqlText
    lookup: str  # exact, in, gte, lt, icontains
    value_type: ValueType

    def parse(self, raw: Any) -> Any:
        if self.lookup == "in":
            values = raw if isinstance(raw, list) else [raw]
            if not values or len(values) > MAX_IN_VALUES:
                raise ValueError(f"give between 1 and {MAX_IN_VALUES} values")
            return [self.value_type.parse(value) for value in values]
        return self.value_type.parse(raw)

    def condition(self, value: Any, vendor: str) -> tuple[str, list[Any]]:
        expr = _for_vendor(self.sql, vendor)
        if self.lookup == "exact":
            return f"{expr} = %s", [value]
        if self.lookup == "in":
            return f"{expr} IN ({', '.join(['%s'] * len(value))})", list(value)
        if self.lookup == "gte":
            return f"{expr} >= %s", [value]
        if self.lookup == "lt":
            return f"{expr} < %s", [value]
        if self.lookup == "icontains":
            escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return f"UPPER({expr}) LIKE UPPER(%s) ESCAPE '\\'", [f"%{escaped}%"]
        raise AssertionError(f"unknown lookup {self.lookup}")


@dataclass(frozen=True)
class ExportQuery:
    """A validated query, as stored on the Export (JSON-able)."""

    filters: dict[str, Any]
    fields: list[str]
    ordering: str

    def as_json(self) -> dict[str, Any]:
        return {"filters": self.filters, "fields": self.fields, "ordering": self.ordering}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportQuery:
        return cls(filters=dict(data["filters"]), fields=list(data["fields"]), ordering=str(data["ordering"]))


@dataclass(frozen=True)
class Dataset:
    """What one dataset exports and how its owner-scoped SQL is built.

    ``from_sql``, ``owner_sql`` and every expression are code, never input.
    ``orderings`` maps an ordering name to its expression; ``-name`` sorts
    descending. ``tiebreak`` makes the order total so exports are repeatable.
    """

    name: str
    description: str
    from_sql: Callable[[], str]
    fields: dict[str, Column]
    filters: dict[str, Filter]
    orderings: dict[str, SqlText]
    default_ordering: str
    tiebreak: str
    #: Column holding the owner's user id; None for staff-only datasets.
    owner_sql: str | None
    group_by: str | None = None
    staff_only: bool = False
    default_fields: list[str] = field(default_factory=list)

    # -- validation ----------------------------------------------------------
    def validate(self, filters: Any, fields: Any, ordering: Any) -> ExportQuery:
        """Check every name against the whitelist; raises InvalidExportQuery naming the offender."""
        if filters is None:
            filters = {}
        if not isinstance(filters, dict):
            raise InvalidExportQuery("filters", "must be an object of filter name to value")
        parsed: dict[str, Any] = {}
        for name, raw in filters.items():
            spec = self.filters.get(name)
            if spec is None:
                raise InvalidExportQuery(
                    "filters",
                    f"unknown filter {name!r} for dataset {self.name!r}; allowed: {', '.join(self.filters)}",
                )
            try:
                parsed[name] = spec.parse(raw)
            except ValueError as exc:
                raise InvalidExportQuery("filters", f"filter {name!r}: {exc}") from None
        if fields is None or fields == []:
            fields = list(self.default_fields or self.fields)
        if not isinstance(fields, list) or not all(isinstance(name, str) for name in fields):
            raise InvalidExportQuery("fields", "must be a list of field names")
        for name in fields:
            if name not in self.fields:
                raise InvalidExportQuery(
                    "fields",
                    f"unknown field {name!r} for dataset {self.name!r}; allowed: {', '.join(self.fields)}",
                )
        if len(set(fields)) != len(fields):
            raise InvalidExportQuery("fields", "a field is listed twice")
        if ordering is None or ordering == "":
            ordering = self.default_ordering
        if not isinstance(ordering, str) or ordering.removeprefix("-") not in self.orderings:
            allowed = ", ".join(self.orderings)
            raise InvalidExportQuery(
                "ordering", f"unknown ordering {ordering!r} for dataset {self.name!r}; allowed: {allowed}"
            )
        return ExportQuery(filters=parsed, fields=list(fields), ordering=ordering)

    # -- SQL -------------------------------------------------------------------
    def select_sql(
        self,
        query: ExportQuery,
        *,
        owner_id: int | None,
        vendor: str,
        quote: Callable[[str], str],
        ordered: bool = True,
    ) -> tuple[str, list[Any]]:
        """``SELECT ...`` for the query and its bound parameters (``%s`` placeholders).

        ``owner_id`` None exports every owner's rows (staff). ``ordered=False``
        leaves out the ORDER BY (for counting the rows).
        """
        columns = ", ".join(f"{_for_vendor(self.fields[name].sql, vendor)} AS {quote(name)}" for name in query.fields)
        conditions: list[str] = []
        params: list[Any] = []
        if owner_id is not None:
            if self.owner_sql is None:
                raise InvalidExportQuery("dataset", f"dataset {self.name!r} is for staff only")
            conditions.append(f"{self.owner_sql} = %s")
            params.append(owner_id)
        for name, value in query.filters.items():
            spec = self.filters[name]
            typed = _typed(value, spec.value_type)
            condition, values = spec.condition(typed, vendor)
            conditions.append(condition)
            params.extend(values)
        descending = query.ordering.startswith("-")
        order = _for_vendor(self.orderings[query.ordering.removeprefix("-")], vendor)
        direction = "DESC" if descending else "ASC"
        sql = f"SELECT {columns} FROM {self.from_sql()}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        if self.group_by:
            sql += f" GROUP BY {self.group_by}"
        if ordered:
            sql += f" ORDER BY {order} {direction}, {self.tiebreak} {direction}"
        return sql, params


def _typed(value: Any, value_type: ValueType) -> Any:
    """Stored JSON back to the value bound in SQL (date-times become datetimes)."""
    if value_type is DATETIME:
        if isinstance(value, list):
            return [datetime.fromisoformat(item) for item in value]
        return datetime.fromisoformat(value)
    return value


# -- the registry -------------------------------------------------------------------------
_datasets: dict[str, Dataset] = {}


def register_dataset(dataset: Dataset) -> Dataset:
    _datasets[dataset.name] = dataset
    return dataset


def get_dataset(name: Any) -> Dataset:
    """The dataset of that name; InvalidExportQuery naming it if there is none."""
    dataset = _datasets.get(name) if isinstance(name, str) else None
    if dataset is None:
        raise InvalidExportQuery("dataset", f"unknown dataset {name!r}; available: {', '.join(sorted(_datasets))}")
    return dataset


def datasets() -> dict[str, Dataset]:
    return dict(_datasets)


# -- the datasets ------------------------------------------------------------------------
def _table(model_label: str) -> str:
    from django.apps import apps
    from django.db import connection

    return connection.ops.quote_name(apps.get_model(model_label)._meta.db_table)


def _user_table() -> str:
    from django.contrib.auth import get_user_model
    from django.db import connection

    return connection.ops.quote_name(get_user_model()._meta.db_table)


def _seconds_between(start: str, end: str) -> dict[str, str]:
    return {
        "postgresql": f"ROUND(EXTRACT(EPOCH FROM ({end} - {start}))::numeric, 3)",
        "default": f"ROUND((julianday({end}) - julianday({start})) * 86400.0, 3)",
    }


def _jobs_from() -> str:
    return f"{_table('jobs.Job')} j LEFT JOIN {_user_table()} u ON u.id = j.owner_id"


def _job_statuses() -> list[str]:
    from jobs.models import JobStatus

    return [status.value for status in JobStatus]


def _queues() -> list[str]:
    from jobs.core.queues import queue_names

    return queue_names()


_JOB_DURATION = _seconds_between("j.started_at", "j.finished_at")

JOBS = register_dataset(
    Dataset(
        name="jobs",
        description="Your job history: type, status, queue, times and durations.",
        from_sql=_jobs_from,
        fields={
            "id": Column("j.id"),
            "type": Column("j.type"),
            "queue": Column("j.queue"),
            "status": Column("j.status"),
            "priority": Column("j.priority"),
            "attempts": Column("j.attempts"),
            "owner": Column("u.username"),
            "created_at": Column("j.created_at", kind="datetime"),
            "started_at": Column("j.started_at", kind="datetime"),
            "finished_at": Column("j.finished_at", kind="datetime"),
            "duration_s": Column(_JOB_DURATION),
            "error": Column("j.error_message"),
        },
        filters={
            "type": Filter("j.type", "exact", TEXT),
            "status": Filter("j.status", "in", choice(_job_statuses())),
            "queue": Filter("j.queue", "in", choice(_queues())),
            "created_after": Filter("j.created_at", "gte", DATETIME),
            "created_before": Filter("j.created_at", "lt", DATETIME),
            "finished_after": Filter("j.finished_at", "gte", DATETIME),
            "finished_before": Filter("j.finished_at", "lt", DATETIME),
            "error_contains": Filter("j.error_message", "icontains", TEXT),
            "owner_id": Filter("j.owner_id", "exact", INTEGER),
        },
        orderings={
            "created_at": "j.created_at",
            "started_at": "j.started_at",
            "finished_at": "j.finished_at",
            "type": "j.type",
            "status": "j.status",
            "duration_s": _JOB_DURATION,
        },
        default_ordering="created_at",
        tiebreak="j.id",
        owner_sql="j.owner_id",
    )
)


def _count_where(condition: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


_COMPLETED = _count_where("j.status = 'completed'")
_FAILED = _count_where("j.status = 'failed'")
_SECONDS = _seconds_between("j.started_at", "j.finished_at")

JOB_METRICS = register_dataset(
    Dataset(
        name="job-metrics",
        description="Per-queue job metrics (jobs, success rate, durations) of finished jobs; staff only.",
        from_sql=lambda: f"{_table('jobs.Job')} j",
        fields={
            "queue": Column("j.queue"),
            "jobs": Column("COUNT(*)"),
            "completed": Column(_COMPLETED),
            "failed": Column(_FAILED),
            "cancelled": Column(_count_where("j.status = 'cancelled'")),
            "success_rate": Column(
                {
                    "postgresql": f"ROUND({_COMPLETED}::numeric / NULLIF({_COMPLETED} + {_FAILED}, 0), 4)",
                    "default": f"ROUND(CAST({_COMPLETED} AS REAL) / NULLIF({_COMPLETED} + {_FAILED}, 0), 4)",
                }
            ),
            "avg_duration_s": Column(
                {
                    "postgresql": f"ROUND(AVG({_SECONDS['postgresql']}), 3)",
                    "default": f"ROUND(AVG({_SECONDS['default']}), 3)",
                }
            ),
            "max_duration_s": Column(
                {"postgresql": f"MAX({_SECONDS['postgresql']})", "default": f"MAX({_SECONDS['default']})"}
            ),
        },
        filters={
            "finished_after": Filter("j.finished_at", "gte", DATETIME),
            "finished_before": Filter("j.finished_at", "lt", DATETIME),
            "queue": Filter("j.queue", "in", choice(_queues())),
        },
        orderings={"queue": "j.queue", "jobs": "COUNT(*)"},
        default_ordering="queue",
        tiebreak="j.queue",
        owner_sql=None,
        group_by="j.queue",
        staff_only=True,
    )
)


def _document_statuses() -> list[str]:
    from documents.models import DocumentStatus

    return [status.value for status in DocumentStatus]


DOCUMENTS = register_dataset(
    Dataset(
        name="documents",
        description="Your documents with their page counts and statuses.",
        from_sql=lambda: f"{_table('documents.Document')} d LEFT JOIN {_user_table()} u ON u.id = d.owner_id",
        fields={
            "id": Column("d.id"),
            "name": Column("d.original_name"),
            "status": Column("d.status"),
            "page_count": Column("d.page_count"),
            "size_bytes": Column("d.size"),
            "owner": Column("u.username"),
            "created_at": Column("d.created_at", kind="datetime"),
            "updated_at": Column("d.updated_at", kind="datetime"),
            "error": Column("d.error"),
        },
        filters={
            "status": Filter("d.status", "in", choice(_document_statuses())),
            "name_contains": Filter("d.original_name", "icontains", TEXT),
            "created_after": Filter("d.created_at", "gte", DATETIME),
            "created_before": Filter("d.created_at", "lt", DATETIME),
            "min_pages": Filter("d.page_count", "gte", INTEGER),
            "owner_id": Filter("d.owner_id", "exact", INTEGER),
        },
        orderings={
            "created_at": "d.created_at",
            "name": "d.original_name",
            "page_count": "d.page_count",
            "status": "d.status",
        },
        default_ordering="created_at",
        tiebreak="d.id",
        owner_sql="d.owner_id",
    )
)


def _delivery_statuses() -> list[str]:
    from campaigns.models import DeliveryStatus

    return [status.value for status in DeliveryStatus]


def _deliveries_from() -> str:
    return f"{_table('campaigns.Delivery')} dl JOIN {_table('campaigns.Campaign')} c ON c.id = dl.campaign_id"


DELIVERIES = register_dataset(
    Dataset(
        name="deliveries",
        description="The delivery results of your campaigns: one row per recipient.",
        from_sql=_deliveries_from,
        fields={
            "id": Column("dl.id"),
            "campaign_id": Column("c.id"),
            "campaign": Column("c.name"),
            "email": Column("dl.email"),
            "status": Column("dl.status"),
            "attempts": Column("dl.attempts"),
            "sent_at": Column("dl.sent_at", kind="datetime"),
            "smtp_response": Column("dl.smtp_response"),
        },
        filters={
            "campaign_id": Filter("c.id", "in", INTEGER),
            "status": Filter("dl.status", "in", choice(_delivery_statuses())),
            "email_contains": Filter("dl.email", "icontains", TEXT),
            "sent_after": Filter("dl.sent_at", "gte", DATETIME),
            "sent_before": Filter("dl.sent_at", "lt", DATETIME),
        },
        orderings={"id": "dl.id", "sent_at": "dl.sent_at", "email": "dl.email", "status": "dl.status"},
        default_ordering="id",
        tiebreak="dl.id",
        owner_sql="c.owner_id",
    )
)
