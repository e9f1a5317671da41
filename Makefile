# Conveyor: `make run` runs the whole system, `make test` the whole test suite.
# The logic lives in scripts/; these targets only chain the steps.
PY := .venv/bin/python
ARGS ?=

.PHONY: run test lint fmt typecheck setup lock

run:
	bash scripts/bootstrap.sh run
	$(PY) manage.py release
	exec $(PY) manage.py runconveyor

test:
	bash scripts/test.sh $(ARGS)

setup:
	bash scripts/bootstrap.sh test

lint:
	.venv/bin/ruff check .
	.venv/bin/lint-imports

fmt:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

typecheck:
	.venv/bin/mypy .

# Re-resolve requirements.lock and requirements-dev.lock (with hashes) after changing pyproject.toml.
lock:
	bash scripts/lock.sh
