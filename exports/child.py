"""The export's child process on databases other than PostgreSQL (Django is set up here).

This module imports nothing from the project at import time, because the
child unpickles a reference to ``write_partial_in_child`` before Django is
ready. (PostgreSQL exports use ``exports.writers`` and need no Django.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_partial_in_child(export_id: str, partial: str, cells: Any) -> dict[str, int]:
    """Set up Django and write the export's rows, publishing progress in ``cells``."""
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    # Only now: exports.queries imports the models, which need the app registry set up above.
    from django.db import connections

    from exports.queries import write_partial

    def report(total: int, rows: int) -> None:
        cells[0] = total
        cells[1] = rows

    try:
        return write_partial(export_id, Path(partial), report)
    finally:
        connections.close_all()
