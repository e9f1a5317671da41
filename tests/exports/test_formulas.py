"""Exported text never becomes a spreadsheet formula: CSV cells get an apostrophe, XLSX cells stay strings."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from openpyxl import load_workbook

from exports.models import Export
from exports.services import create_export, validate_export_request, write_export
from exports.writers import CSV, ExportSpec, neutralise_csv_text, write_csv, write_xlsx
from jobs.models import Job
from tests.exports.helpers import read_csv, seed_jobs

pytestmark = pytest.mark.django_db(transaction=True)

#: Text a spreadsheet would run, and what the CSV cell must hold instead.
DANGEROUS = {
    '=HYPERLINK("http://evil.test","x")': '\'=HYPERLINK("http://evil.test","x")',
    "+1+2": "'+1+2",
    "-2+3": "'-2+3",
    "@SUM(A1:A2)": "'@SUM(A1:A2)",
    "\tcmd": "'\tcmd",
    "\rcmd": "'\rcmd",
}
HARMLESS = ["", "plain text", "it's = fine inside", " =leading space"]


def _export(user, query_params, export_format="csv"):
    dataset, query = validate_export_request(user, query_params)
    export = create_export(user, dataset, query, export_format)
    Export.mark_running(str(export.id))
    relative = f"exports/test-{export.id}.{export_format}"
    write_export(str(export.id), relative, job_id=None)
    return relative


def _job_with_error(owner, job_type: str, text: str, start: int = 0) -> None:
    job = seed_jobs(owner, 1, job_type=job_type, start=start)[0]
    Job.objects.filter(pk=job.pk).update(error_message=text)


def _errors_by_type(user):
    for index, text in enumerate([*DANGEROUS, *HARMLESS]):
        _job_with_error(user, f"t{index:02d}", text, start=index)


def test_postgresql_copy_prefixes_text_cells_that_a_spreadsheet_would_run(media_root, user):
    # Given jobs whose error text starts with each character a spreadsheet reads as a formula, and some that do not
    _errors_by_type(user)
    # When they are exported as CSV (PostgreSQL's COPY writes the file)
    relative = _export(user, {"dataset": "jobs", "fields": ["type", "attempts", "owner", "error"], "ordering": "type"})
    # Then each dangerous cell starts with an apostrophe and keeps the rest; everything else is as stored
    header, rows = read_csv((media_root / relative).read_bytes())
    assert header == ["type", "attempts", "owner", "error"]
    assert [row[3] for row in rows] == [*DANGEROUS.values(), *HARMLESS]
    # And numbers and names are untouched
    assert {row[1] for row in rows} <= {"1", "2"}
    assert {row[2] for row in rows} == {user.username}


def test_postgresql_copy_keeps_null_apart_from_empty_text(media_root, staff):
    # Given a job with no owner (NULL) and an empty error
    _job_with_error(None, "orphan", "")
    # When staff export it (every owner's rows)
    relative = _export(staff, {"dataset": "jobs", "fields": ["owner", "error"], "filters": {"type": "orphan"}})
    # Then, as before, COPY writes NULL as nothing and empty text as ""
    assert (media_root / relative).read_bytes().splitlines()[1] == b',""'


def test_xlsx_writes_formula_like_text_as_string_cells(media_root, user):
    # Given jobs whose error text is a formula, an error code and other dangerous text
    _errors_by_type(user)
    _job_with_error(user, "t99", "#N/A", start=99)
    # When they are exported as XLSX
    relative = _export(user, {"dataset": "jobs", "fields": ["type", "error"], "ordering": "type"}, "xlsx")
    # Then every error cell is a string holding the text as stored: no formula, no error value
    sheet = load_workbook(media_root / relative).worksheets[0]
    cells = [sheet.cell(row=row, column=2) for row in range(2, sheet.max_row + 1)]
    assert [cell.value or "" for cell in cells] == [*DANGEROUS, *HARMLESS, "#N/A"]
    assert {cell.data_type for cell in cells if cell.value} == {"s"}


def _spec(tmp_path: Path, export_format: str) -> ExportSpec:
    return ExportSpec(
        sql="",
        count_sql="",
        params=[],
        fields=["name", "pages"],
        kinds=["text", "text"],
        export_format=export_format,
        sheet_title="documents",
        partial_path=str(tmp_path / f"out.{export_format}"),
        chunk_rows=10,
        database={},
    )


def test_python_csv_writer_prefixes_dangerous_text_but_not_numbers(tmp_path):
    # Given rows as another database returns them: text and numbers, one negative
    spec = _spec(tmp_path, CSV)
    chunks = iter([[("=1+1", -5), ("@x", 3), ("ok", None)]])
    # When they are written by the Python writer (databases without COPY)
    write_csv(chunks, spec, 3, lambda total, rows: None)
    # Then the text is neutralised, the numbers are numbers
    _, rows = read_csv(Path(spec.partial_path).read_bytes())
    assert rows == [["'=1+1", "-5"], ["'@x", "3"], ["ok", ""]]


def test_neutralise_csv_text_prefixes_only_the_dangerous_first_characters():
    assert [neutralise_csv_text(text) for text in DANGEROUS] == list(DANGEROUS.values())
    assert [neutralise_csv_text(text) for text in HARMLESS] == HARMLESS


def test_xlsx_writer_never_writes_a_formula_cell(tmp_path):
    spec = _spec(tmp_path, "xlsx")
    write_xlsx(iter([[("=1+1", 2), ("#DIV/0!", 3)]]), spec, 2, lambda total, rows: None)
    sheet = load_workbook(io.BytesIO(Path(spec.partial_path).read_bytes())).worksheets[0]
    assert [(sheet.cell(row=r, column=1).value, sheet.cell(row=r, column=1).data_type) for r in (2, 3)] == [
        ("=1+1", "s"),
        ("#DIV/0!", "s"),
    ]
    assert sheet.cell(row=2, column=2).data_type == "n"
