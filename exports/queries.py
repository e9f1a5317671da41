"""An export's rows: its dataset's SQL with bound values, and writing them from this process's connection.

Used by the job's process (the ``ExportSpec`` handed to the PostgreSQL
child) and by the child that sets Django up on other databases
(``exports.child``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from exports.models import Export, ExportFormat
from exports.writers import EXCEL_MAX_ROWS, ExportSpec, Report, fetch_chunks, write_csv, write_postgresql, write_xlsx
from jobs.public import DatasetQuery, get_dataset


def export_spec(export: Export, partial: Path) -> ExportSpec:
    """What the PostgreSQL child needs to write this export: SQL, bound values, connection."""
    dataset = get_dataset(export.dataset)
    query = DatasetQuery.from_json(export.query_params)
    owner_id = None if export.all_owners else export.owner_id
    quote = connection.ops.quote_name
    sql, params = dataset.select_sql(query, owner_id=owner_id, vendor="postgresql", quote=quote)
    count_sql, _ = dataset.select_sql(query, owner_id=owner_id, vendor="postgresql", quote=quote, ordered=False)
    database = {
        key: value
        for key, value in connection.get_connection_params().items()
        if key not in ("context", "cursor_factory", "prepare_threshold")
    }
    return ExportSpec(
        sql=sql,
        count_sql=count_sql,
        params=params,
        fields=list(query.fields),
        kinds=[dataset.fields[name].kind for name in query.fields],
        export_format=export.format,
        sheet_title=dataset.name,
        partial_path=str(partial),
        chunk_rows=settings.EXPORT_CHUNK_ROWS,
        database=database,
    )


def write_partial(export_id: str, partial: Path, report: Report) -> dict[str, int]:
    """Write the export's rows to ``partial`` from whatever database this is."""
    export = Export.objects.get(id=export_id)
    if connection.vendor == "postgresql":
        return write_postgresql(export_spec(export, partial), report)
    dataset = get_dataset(export.dataset)
    query = DatasetQuery.from_json(export.query_params)
    owner_id = None if export.all_owners else export.owner_id
    sql, params = dataset.select_sql(
        query, owner_id=owner_id, vendor=connection.vendor, quote=connection.ops.quote_name
    )
    count_sql, _ = dataset.select_sql(
        query, owner_id=owner_id, vendor=connection.vendor, quote=connection.ops.quote_name, ordered=False
    )
    params = [_adapt(value) for value in params]
    spec = ExportSpec(
        sql=sql,
        count_sql=count_sql,
        params=params,
        fields=list(query.fields),
        kinds=[dataset.fields[name].kind for name in query.fields],
        export_format=export.format,
        sheet_title=dataset.name,
        partial_path=str(partial),
        chunk_rows=settings.EXPORT_CHUNK_ROWS,
        database={},
    )
    with connection.cursor() as cursor:
        # count_sql is the ORM-compiled query of the dataset spec; its values are the separate params.
        cursor.execute(f"SELECT COUNT(*) FROM ({count_sql}) AS export_rows", params)  # noqa: S608
        row = cursor.fetchone()
        total = int(row[0]) if row else 0
        report(total, 0)
        if export.format == ExportFormat.XLSX and total >= EXCEL_MAX_ROWS:
            return {"rows": 0, "total_rows": total, "too_many_rows": 1}
        cursor.execute(sql, params)
        chunks = fetch_chunks(cursor, settings.EXPORT_CHUNK_ROWS)
        if export.format == ExportFormat.CSV:
            rows = write_csv(chunks, spec, total, report)
        else:
            rows = write_xlsx(chunks, spec, total, report)
    return {"rows": rows, "total_rows": total}


def _adapt(value: Any) -> Any:
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value
