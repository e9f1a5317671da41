#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: set up, ruff, import contracts, mypy,
# pytest on PostgreSQL, then the end-to-end subset on SQLite.
# Extra arguments go to pytest (`make test ARGS="-k email -x"`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Tests run against PostgreSQL and their own Redis database and key prefix,
# so a `make run` on the same machine never sees their messages.
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/15}"
export DRAMATIQ_NAMESPACE="${DRAMATIQ_NAMESPACE:-conveyor-test}"

bash scripts/bootstrap.sh test

echo "== ruff"
.venv/bin/ruff check .
echo "== lint-imports (the layers and boundaries in pyproject.toml)"
.venv/bin/lint-imports --no-cache
echo "== mypy"
.venv/bin/mypy .
echo "== manage.py check --deploy (production mode)"
# A throwaway key and token: the check reads the settings and never connects to the database.
CONVEYOR_ENV=production DJANGO_SETTINGS_MODULE=config.settings \
  SECRET_KEY="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
  METRICS_TOKEN="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')" \
  ALLOWED_HOSTS=conveyor.example.com DATABASE_URL=postgres://postgres@127.0.0.1:5432/conveyor \
  .venv/bin/python manage.py check --deploy --fail-level WARNING
echo "== pytest (PostgreSQL)"
# In parallel processes (pytest-xdist), a test file per process at a time: most tests spend
# their time waiting on the worker pools and servers they start, so three processes on two
# cores halve the wall time. config/settings_test.py gives each its own Redis database,
# key prefix and var/ directory; pytest-django its own test database. TEST_PROCESSES=0
# runs everything in this one process.
status=0
.venv/bin/pytest -n "${TEST_PROCESSES:-3}" --dist loadfile "$@" || status=$?

# `make run` uses SQLite unless DATABASE_URL says otherwise, so the API and
# worker end-to-end subset (state writes, sending, exports) runs on SQLite too.
# The database is a file: the worker processes that tests start open the same
# test database (config/settings_test.py names it). Only on a whole-suite run:
# a focused one (`make test ARGS=...`) stays on PostgreSQL.
sqlite_status=0
if [ "$#" -eq 0 ]; then
  echo "== pytest (SQLite: the API and worker end-to-end subset)"
  # Left out: the fault tests and the rate-limit test. They test worker and
  # Redis behaviour, the same on either database, and are the slowest (30 s).
  sqlite_dir="$(mktemp -d)"
  trap 'rm -rf "$sqlite_dir"' EXIT
  DATABASE_URL="sqlite:///$sqlite_dir/conveyor.sqlite3" .venv/bin/pytest -m "not fault" \
    --deselect tests/campaigns/test_email_batch_jobs.py::test_rate_limit_holds_in_every_window_across_two_worker_processes \
    tests/jobs/test_lifecycle.py tests/jobs/test_api.py \
    tests/campaigns/test_sending.py tests/campaigns/test_email_batch_jobs.py \
    tests/exports/test_services.py tests/exports/test_domain_datasets.py tests/exports/test_jobs.py || sqlite_status=$?
fi
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
exit "$sqlite_status"
