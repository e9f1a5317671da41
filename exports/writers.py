"""Writing an export file from rows, without Django: what the export's child process runs.

On PostgreSQL the child needs nothing but psycopg: the parent builds the
SQL and its bound values (an ``ExportSpec``), and the child connects, counts
and streams in one REPEATABLE READ snapshot. Skipping ``django.setup()``
keeps the child small and quick to start. Progress goes back through two
shared integers (total, rows written) that a thread of the parent reads.

Exported text never reaches a spreadsheet as a formula (CSV injection): a
CSV cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return gets a leading apostrophe (in SQL on the COPY path, so
PostgreSQL still writes the file), and an XLSX cell holding text that
openpyxl would turn into a formula or an error value is written as a string.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

#: Called as ``report(total_rows, rows_written)`` while a file is written.
Report = Callable[[int, int], None]

CSV = "csv"
#: Rows an Excel sheet holds, the header included.
EXCEL_MAX_ROWS = 1_048_576
#: First characters that make a spreadsheet read a CSV cell as a formula (OWASP's CSV injection list);
#: every one is below "A" in ASCII (``neutralised_select`` relies on it).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: The same as code points, for PostgreSQL's ``ascii()``.
_FORMULA_START_CODES = ", ".join(str(ord(char)) for char in FORMULA_STARTS)
#: PostgreSQL types whose text never starts a formula (a minus sign only opens a negative number or
#: interval): bool, int8, int2, int4, oid, float4, float8, date, time, timestamp, timestamptz,
#: interval, timetz, numeric, uuid. Every other column (text, varchar, json, enums...) is checked.
_SAFE_TYPE_OIDS = frozenset({16, 20, 21, 23, 26, 700, 701, 1082, 1083, 1114, 1184, 1186, 1266, 1700, 2950})
#: openpyxl's ``ERROR_CODES``: text it writes as an error value rather than a string.
_EXCEL_ERROR_CODES = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"})


@dataclass(frozen=True)
class ExportSpec:
    """Everything a child needs to write one export (picklable: text, numbers, date-times)."""

    sql: str
    #: The same rows unordered, for counting them.
    count_sql: str
    params: list[Any]
    fields: list[str]
    kinds: list[str]
    export_format: str
    sheet_title: str
    partial_path: str
    chunk_rows: int
    #: psycopg.connect() keywords.
    database: dict[str, Any]


def write_postgresql_export(spec: ExportSpec, cells: Any) -> dict[str, int]:
    """The child's entry point: write the file, publishing progress in ``cells`` (total, rows)."""

    def report(total: int, rows: int) -> None:
        cells[0] = total
        cells[1] = rows

    return write_postgresql(spec, report)


def write_postgresql(spec: ExportSpec, report: Report) -> dict[str, int]:
    """Count and stream the rows of one snapshot into ``spec.partial_path``."""
    import psycopg

    with psycopg.connect(**spec.database, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        # An export reads rows once, in order: compiling the query (PostgreSQL
        # JIT kicks in on its cost estimate) took ~0.1 s of a 0.3 s export of
        # 100,000 rows and did not pay back at 1,000,000.
        conn.execute("SET jit = off")
        with conn.transaction():
            # One snapshot for the count and the rows: the total matches what is written.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            with psycopg.ClientCursor(conn) as cursor:
                # The dataset's own SQL text; the values are bound by psycopg.
                cursor.execute(f"SELECT COUNT(*) FROM ({spec.count_sql}) AS export_rows", spec.params)  # noqa: S608
                row = cursor.fetchone()
                total = int(row[0]) if row else 0
                report(total, 0)
                if spec.export_format == CSV:
                    rows = _copy_csv(cursor, spec, total, report)
                    return {"rows": rows, "total_rows": total}
                if total >= EXCEL_MAX_ROWS:
                    return {"rows": 0, "total_rows": total, "too_many_rows": 1}
            with conn.cursor(name="export_rows") as server_side:
                server_side.itersize = spec.chunk_rows
                server_side.execute(spec.sql, spec.params)
                rows = write_xlsx(fetch_chunks(server_side, spec.chunk_rows), spec, total, report)
    return {"rows": rows, "total_rows": total}


def neutralise_csv_text(text: str) -> str:
    """``text`` with a leading apostrophe when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def neutralised_select(sql: str, columns: Sequence[tuple[str, int]]) -> str:
    """``sql`` wrapped so that PostgreSQL puts an apostrophe before text a spreadsheet would run.

    ``columns`` are the query's (name, type OID) pairs. A column of a type
    whose text cannot start a formula passes as it is (COPY writes it as
    before); any other is tested on its first character's code point
    (``ascii()``). NULL stays NULL. On the jobs dataset (6 of 12 columns
    tested) this cost PostgreSQL ~0.25 s per million rows; a plain
    ``ascii(...) IN (...)`` cost ~0.9 s. The inner ORDER BY holds: a
    subquery with an ORDER BY is not flattened, and a plain projection over
    it emits its rows in that order.
    """
    if all(type_oid in _SAFE_TYPE_OIDS for _, type_oid in columns):
        return sql
    apostrophe = "''''"  # the SQL literal '
    expressions = []
    for name, type_oid in columns:
        column = f"export_rows.{_quote_name(name)}"
        if type_oid in _SAFE_TYPE_OIDS:
            expressions.append(column)
            continue
        text = f"{column}::text"
        # Every formula start is below "A" (65): most text is settled by one comparison.
        test = f"ascii({text}) < 65 AND ascii({text}) IN ({_FORMULA_START_CODES})"
        expressions.append(f"CASE WHEN {test} THEN {apostrophe} || {text} ELSE {text} END AS {_quote_name(name)}")
    # SQL text from the dataset's definitions and the query's own column names; values stay bound.
    return f"SELECT {', '.join(expressions)} FROM ({sql}) AS export_rows"  # noqa: S608


def _copy_csv(cursor: Any, spec: ExportSpec, total: int, report: Report) -> int:
    """PostgreSQL writes the CSV itself; psycopg binds the values into the COPY statement.

    The query's column types come first (``LIMIT 0``: planned, no row
    read), so that only the columns that may hold formula-like text are
    tested (``neutralised_select``).
    """
    # The dataset's own SQL text; the values are bound by psycopg.
    cursor.execute(f"SELECT * FROM ({spec.sql}) AS export_rows LIMIT 0", spec.params)  # noqa: S608
    columns = [(column.name, column.type_code) for column in cursor.description or []]
    rows = -1  # the first piece is the header
    statement = f"COPY ({neutralised_select(spec.sql, columns)}) TO STDOUT WITH (FORMAT csv, HEADER true)"
    with cursor.copy(statement, spec.params) as copy, open(spec.partial_path, "wb", buffering=1 << 20) as out:
        # PostgreSQL sends one piece per row.
        for piece in copy:
            out.write(piece)
            rows += 1
            if rows % 1000 == 0:
                report(total, rows)
    rows = max(rows, 0)
    report(total, rows)
    return rows


def fetch_chunks(cursor: Any, size: int) -> Iterator[Sequence[Sequence[Any]]]:
    while True:
        chunk = cursor.fetchmany(size)
        if not chunk:
            return
        yield chunk


def write_csv(chunks: Iterator[Sequence[Sequence[Any]]], spec: ExportSpec, total: int, report: Report) -> int:
    """Rows through Python's csv module (databases without COPY)."""
    rows = 0
    with open(spec.partial_path, "w", newline="", encoding="utf-8", buffering=1 << 20) as out:
        writer = csv.writer(out)
        writer.writerow(spec.fields)
        for chunk in chunks:
            writer.writerows([_csv_value(value) for value in row] for row in chunk)
            rows += len(chunk)
            report(total, rows)
    return rows


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise_csv_text(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return value


def write_xlsx(chunks: Iterator[Sequence[Sequence[Any]]], spec: ExportSpec, total: int, report: Report) -> int:
    """openpyxl's write-only mode: rows go to a temporary file, not into memory.

    openpyxl turns text starting with ``=`` into a formula and an error code
    (``#N/A``) into an error value: such text goes in as a string cell of its
    own (``text_cell``).
    """
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=spec.sheet_title[:31])
    sheet.append(spec.fields)
    rows = 0
    for chunk in chunks:
        for row in chunk:
            values = [cell_value(value, kind) for value, kind in zip(row, spec.kinds, strict=True)]
            sheet.append([text_cell(sheet, value) if _not_kept_as_text(value) else value for value in values])
        rows += len(chunk)
        report(total, rows)
    workbook.save(spec.partial_path)
    return rows


def _not_kept_as_text(value: Any) -> bool:
    """True for text that openpyxl would write as a formula or an error value."""
    return isinstance(value, str) and (value.startswith("=") or value in _EXCEL_ERROR_CODES)


def text_cell(sheet: Any, text: str) -> Any:
    """A write-only cell holding ``text`` as a string, which stays text when edited in Excel (quote prefix)."""
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=text)
    cell.data_type = "s"
    cell.quotePrefix = True
    return cell


def cell_value(value: Any, kind: str) -> Any:
    """A value openpyxl accepts: naive UTC date-times, text for anything unusual."""
    if value is None or (kind != "datetime" and isinstance(value, bool | int | float | Decimal | str)):
        return value
    if kind == "datetime" and isinstance(value, str):
        value = _parse_datetime(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value
    if isinstance(value, date | Decimal | int | float | str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _parse_datetime(text: str) -> datetime | str:
    """SQLite returns date-times as text (naive UTC)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text
