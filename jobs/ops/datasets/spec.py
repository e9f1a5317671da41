"""What a dataset is (columns, filters, orderings, owner scope) and the registry of them.

A dataset is registered by the app that owns its rows (the platform's own
over jobs in ``jobs.ops.datasets.jobs``, the domain apps' from their
``ready()``, through ``jobs.public``); the exports app looks them up by name.

A request names a dataset and, optionally, filters, fields and an ordering.
Every name is checked against the dataset's whitelist (an unknown one is an
``InvalidDatasetQuery`` naming it) and every filter value is parsed to its
declared type. The SQL is then put together only from text written in code
(column expressions, table names) and the values travel as bound
parameters: no user input ever becomes SQL text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Model
from django.utils.dateparse import parse_datetime

from jobs.core.exceptions import PermanentJobError


class InvalidDatasetQuery(PermanentJobError):
    """A dataset, filter, field or ordering that the whitelist does not allow."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


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
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError("must be an integer") from None
    if not -_INTEGER_LIMIT <= value < _INTEGER_LIMIT:
        # Past 64 bits the database driver raises at export time: a retry, then "unexpected error".
        raise ValueError("must be between -2^63 and 2^63 - 1")
    return value


_INTEGER_LIMIT = 2**63


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


#: Where the dash-separated groups of a UUID start in its 32 hex digits, and their lengths.
_UUID_GROUPS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))


def _column_sql(column: Column, vendor: str) -> str:
    """The column's expression; on SQLite, one whose text reads as PostgreSQL's does.

    SQLite keeps a UUID as 32 hex digits and a UTC date-time as text without
    an offset (Django's storage): an export made by ``make run`` on SQLite
    would give other ids than the API and date-times in no time zone.
    """
    sql = _for_vendor(column.sql, vendor)
    if vendor != "sqlite":
        return sql
    # NULL stays NULL: || and substr() of NULL are NULL.
    if column.kind == "datetime":
        return f"({sql} || '+00')"
    if column.kind == "uuid":
        return "(" + " || '-' || ".join(f"substr({sql}, {start}, {length})" for start, length in _UUID_GROUPS) + ")"
    return sql


@dataclass(frozen=True)
class Column:
    """An exported field: its SQL expression (per database vendor when they differ)."""

    sql: SqlText
    #: "datetime" columns are turned into naive UTC datetimes for Excel; on SQLite,
    #: "datetime" and "uuid" columns are written as PostgreSQL writes them (``_column_sql``).
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
class DatasetQuery:
    """A validated query, JSON-able (an export stores it with its row)."""

    filters: dict[str, Any]
    fields: list[str]
    ordering: str

    def as_json(self) -> dict[str, Any]:
        return {"filters": self.filters, "fields": self.fields, "ordering": self.ordering}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DatasetQuery:
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
    def validate(self, filters: Any, fields: Any, ordering: Any) -> DatasetQuery:
        """Check every name against the whitelist; raises InvalidDatasetQuery naming the offender."""
        if filters is None:
            filters = {}
        if not isinstance(filters, dict):
            raise InvalidDatasetQuery("filters", "must be an object of filter name to value")
        parsed: dict[str, Any] = {}
        for name, raw in filters.items():
            spec = self.filters.get(name)
            if spec is None:
                raise InvalidDatasetQuery(
                    "filters",
                    f"unknown filter {name!r} for dataset {self.name!r}; allowed: {', '.join(self.filters)}",
                )
            try:
                parsed[name] = spec.parse(raw)
            except ValueError as exc:
                raise InvalidDatasetQuery("filters", f"filter {name!r}: {exc}") from None
        if fields is None or fields == []:
            fields = list(self.default_fields or self.fields)
        if not isinstance(fields, list) or not all(isinstance(name, str) for name in fields):
            raise InvalidDatasetQuery("fields", "must be a list of field names")
        for name in fields:
            if name not in self.fields:
                raise InvalidDatasetQuery(
                    "fields",
                    f"unknown field {name!r} for dataset {self.name!r}; allowed: {', '.join(self.fields)}",
                )
        if len(set(fields)) != len(fields):
            raise InvalidDatasetQuery("fields", "a field is listed twice")
        if ordering is None or ordering == "":
            ordering = self.default_ordering
        if not isinstance(ordering, str) or ordering.removeprefix("-") not in self.orderings:
            allowed = ", ".join(self.orderings)
            raise InvalidDatasetQuery(
                "ordering", f"unknown ordering {ordering!r} for dataset {self.name!r}; allowed: {allowed}"
            )
        return DatasetQuery(filters=parsed, fields=list(fields), ordering=ordering)

    # -- SQL -------------------------------------------------------------------
    def select_sql(
        self,
        query: DatasetQuery,
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
        columns = ", ".join(f"{_column_sql(self.fields[name], vendor)} AS {quote(name)}" for name in query.fields)
        conditions: list[str] = []
        params: list[Any] = []
        if owner_id is not None:
            if self.owner_sql is None:
                raise InvalidDatasetQuery("dataset", f"dataset {self.name!r} is for staff only")
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
        # Columns and FROM come from the dataset spec in code; filter values are parameters.
        sql = f"SELECT {columns} FROM {self.from_sql()}"  # noqa: S608
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
    """The dataset of that name; InvalidDatasetQuery naming it if there is none."""
    dataset = _datasets.get(name) if isinstance(name, str) else None
    if dataset is None:
        raise InvalidDatasetQuery("dataset", f"unknown dataset {name!r}; available: {', '.join(sorted(_datasets))}")
    return dataset


def datasets() -> dict[str, Dataset]:
    return dict(_datasets)


# -- for a dataset's SQL ------------------------------------------------------------------
def quoted_table(model: type[Model]) -> str:
    """The model's table name, quoted for this database (for a dataset's ``from_sql``)."""
    return connection.ops.quote_name(model._meta.db_table)
