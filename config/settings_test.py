"""Settings for the test suite: the real settings with engine timings shortened.

Worker processes started by the tests use this module too, so the pytest
process and its workers agree on every timing and on the Redis namespace.
"""

from __future__ import annotations

import os

_TEST_DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
    "DRAMATIQ_NAMESPACE": "conveyor-test",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "DRAMATIQ_HEARTBEAT_TIMEOUT_MS": "3000",
    "DRAMATIQ_HEARTBEAT_INTERVAL_MS": "500",
    "DRAMATIQ_MAINTENANCE_INTERVAL_MS": "1000",
    "JOBS_RETRY_BACKOFF_MIN_MS": "200",
    "JOBS_RETRY_BACKOFF_MAX_MS": "1000",
    "WORKER_SHUTDOWN_GRACE_S": "3",
    "JOBS_RECONCILE_GRACE_S": "1",
    "JOBS_STRANDED_AFTER_S": "5",
    "JOBS_PROGRESS_MIN_INTERVAL_S": "0.05",
    "JOBS_WATCHDOG_INTERVAL_S": "0.1",
    "CONN_MAX_AGE": "0",
    "SCHEDULER_HEARTBEAT_INTERVAL_S": "0.5",
    "SCHEDULER_ALIVE_HEARTBEAT_S": "3",
    # Tests change workers and queues and then read /workers/health at once: no kept report
    # (tests/jobs/test_health.py sets it to test the cache itself).
    "HEALTH_CACHE_S": "0",
    # The suite signs in and starts jobs far faster than a person; tests/security/test_throttling.py
    # starts its server with the production rates.
    "THROTTLE_LOGIN_ADDRESS": "off",
    "THROTTLE_LOGIN_USERNAME": "off",
    "THROTTLE_JOB_START": "off",
    "THROTTLE_UPLOAD": "off",
    # Likewise sign-in lockout (django-axes); tests/security/test_lockout.py sets its own limit.
    "AXES_FAILURE_LIMIT": "1000",
}
for _name, _value in _TEST_DEFAULTS.items():
    os.environ.setdefault(_name, _value)


def _isolate_parallel_worker() -> None:
    """Under ``pytest -n``, give each pytest worker its own Redis database, key prefix and var/ dir.

    pytest-django already gives each one its own test database. The rest is
    shared by name, so two workers would otherwise read each other's messages,
    rate-limit windows and stored files. The worker pools and web servers a
    test starts inherit this environment; the marker variable keeps them from
    applying the suffix a second time.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker or os.environ.get("CONVEYOR_TEST_WORKER") == worker:
        return
    index = int(worker.removeprefix("gw"))
    base, _, database = os.environ["REDIS_URL"].rpartition("/")
    # Counting down from the configured database (15 by default), which no `make run` uses.
    os.environ["REDIS_URL"] = f"{base}/{int(database or 0) - index}"
    os.environ["DRAMATIQ_NAMESPACE"] = f"{os.environ['DRAMATIQ_NAMESPACE']}-{worker}"
    var_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "var", f"test-{worker}")
    os.environ.setdefault("CONVEYOR_VAR_DIR", var_dir)
    os.environ["CONVEYOR_TEST_WORKER"] = worker


_isolate_parallel_worker()

from config.settings import *  # noqa: E402,F403
from config.settings import INSTALLED_APPS, STORAGES  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
# Manifest storage refuses to render {% static %} without a collectstatic run; tests render
# templates without one. tests/browser/test_static_files.py checks the production storage.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # The test database as a file next to the configured one: the worker
    # processes that tests start open it by name (an in-memory test database,
    # the default for SQLite, would be this process's alone).
    DATABASES["default"]["TEST"] = {"NAME": f"{DATABASES['default']['NAME']}.test"}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
