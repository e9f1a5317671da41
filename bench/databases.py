"""The benchmark's own PostgreSQL database, made when missing (the one ``DATABASE_URL`` names)."""

from __future__ import annotations

import os


def ensure_database() -> None:
    """Create ``DATABASE_URL``'s database through the server's ``postgres`` database if it does not exist."""
    import psycopg

    name = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    admin_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
