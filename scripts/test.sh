#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: set up, ruff, import contracts, mypy, pytest.
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
echo "== pytest"
exec .venv/bin/pytest "$@"
