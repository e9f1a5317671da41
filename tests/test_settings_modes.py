"""``CONVEYOR_ENV``: development generates and keeps its key; production refuses unsafe settings.

Each start is a real ``manage.py`` (or uvicorn) process with its own
environment: the settings module runs once per process, so that is where its
refusals and its key file can be seen.
"""

from __future__ import annotations

import http.client
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from config.modes import OLD_DEVELOPMENT_KEY
from tests.web_server import WebServer
from tests.workers import ROOT

# Every variable these tests set: the test process's own values must not leak into a start.
MODE_VARIABLES = (
    # Set in this process by the browser tests' fixture (Playwright's sync API);
    # a deployment never has it, and check --deploy refuses it (async.E001).
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "CONVEYOR_ENV",
    "CONVEYOR_VAR_DIR",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "METRICS_TOKEN",
    "DEBUG",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "CSRF_TRUSTED_ORIGINS",
    "FORWARDED_ALLOW_IPS",
)

STRONG_KEY = secrets.token_urlsafe(50)
STRONG_METRICS_TOKEN = secrets.token_urlsafe(32)
PRODUCTION = {
    "CONVEYOR_ENV": "production",
    "SECRET_KEY": STRONG_KEY,
    "ALLOWED_HOSTS": "conveyor.example.com",
    # Never connected to by `check`: only its scheme matters here.
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/conveyor",
    "METRICS_TOKEN": STRONG_METRICS_TOKEN,
}


def manage(*args: str, env: Mapping[str, str | None], var_dir: Path) -> subprocess.CompletedProcess[str]:
    """``manage.py <args>`` with the real settings, ``env`` on top (None removes a variable)."""
    process_env = {name: value for name, value in os.environ.items() if name not in MODE_VARIABLES}
    process_env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    process_env["CONVEYOR_VAR_DIR"] = str(var_dir)
    for name, value in env.items():
        if value is None:
            process_env.pop(name, None)
        else:
            process_env[name] = value
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=process_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def print_settings(names: str, *, env: Mapping[str, str | None], var_dir: Path) -> list[str]:
    code = f"from django.conf import settings; print(*(getattr(settings, n) for n in {names.split()!r}), sep='\\n')"
    result = manage("shell", "--no-imports", "-c", code, env=env, var_dir=var_dir)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


# --- production refusals -------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY is unset"),
        ({"SECRET_KEY": ""}, "SECRET_KEY is unset"),
        ({"SECRET_KEY": secrets.token_urlsafe(20)}, "SECRET_KEY is too short"),
        ({"SECRET_KEY": "ab" * 40}, "SECRET_KEY has too little variety"),
        ({"SECRET_KEY": OLD_DEVELOPMENT_KEY}, "SECRET_KEY is the old development default"),
        ({"SECRET_KEY": "django-insecure-" + secrets.token_urlsafe(50)}, "SECRET_KEY starts with 'django-insecure-'"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS is unset"),
        ({"ALLOWED_HOSTS": " , "}, "ALLOWED_HOSTS is unset"),
        ({"DATABASE_URL": None}, "DATABASE_URL is unset"),
        ({"DATABASE_URL": "sqlite:////tmp/conveyor.sqlite3"}, "DATABASE_URL is SQLite"),
        ({"METRICS_TOKEN": "metrics"}, "METRICS_TOKEN is too short"),
        ({"METRICS_TOKEN": "ab" * 20}, "METRICS_TOKEN has too little variety"),
        ({"DEBUG": "true"}, "DEBUG is on"),
        ({"CONVEYOR_ENV": "staging"}, "CONVEYOR_ENV must be development or production, got 'staging'"),
    ],
    # The variable's name, not its value: some values are random, and parallel workers must collect the same ids.
    ids=lambda value: "-".join(value) if isinstance(value, dict) else None,
)
def test_production_refuses_to_start_with_one_line_naming_the_variable(tmp_path, change, expected):
    # Given a production environment with one unsafe variable
    env = {**PRODUCTION, **change}

    # When the check command starts
    result = manage("check", env=env, var_dir=tmp_path)

    # Then it exits 1 with a single line that names the variable, and no traceback
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("conveyor: ") and expected in lines[0]
    assert result.stdout == ""


def test_production_names_every_unsafe_variable_on_the_same_line(tmp_path):
    env = {"CONVEYOR_ENV": "production", "METRICS_TOKEN": "short"}

    result = manage("check", env=env, var_dir=tmp_path)

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    for name in ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "METRICS_TOKEN"):
        assert name in line


def test_runconveyor_refuses_before_starting_any_process(tmp_path):
    # The supervisor's own process loads the settings first: nothing is spawned.
    result = manage("runconveyor", env={**PRODUCTION, "SECRET_KEY": OLD_DEVELOPMENT_KEY}, var_dir=tmp_path)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "conveyor: CONVEYOR_ENV=production refuses to start: SECRET_KEY is the old development default, which is public"
    ]
    assert "Processes" not in result.stdout


def test_uvicorn_refuses_with_one_line_and_its_startup_failure_code(tmp_path):
    env = {name: value for name, value in os.environ.items() if name not in MODE_VARIABLES}
    env.update(PRODUCTION, DJANGO_SETTINGS_MODULE="config.settings", CONVEYOR_VAR_DIR=str(tmp_path))
    env["DATABASE_URL"] = "sqlite:////tmp/conveyor.sqlite3"

    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", "1", "--lifespan", "off"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # 3 is uvicorn's start-up failure: with --workers N its parent stops rather than restarting
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        "conveyor: CONVEYOR_ENV=production refuses to start: DATABASE_URL is SQLite (production needs PostgreSQL)"
    ]


def test_production_without_a_metrics_token_starts_with_metrics_off(tmp_path):
    result = manage("check", env={**PRODUCTION, "METRICS_TOKEN": None}, var_dir=tmp_path)

    assert result.returncode == 0, result.stderr


def test_production_passes_the_deployment_checks(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION, var_dir=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    # Only HSTS preload (security.W021) is silenced, on purpose
    assert "System check identified no issues (1 silenced)." in result.stdout


def test_production_defaults_are_the_safe_ones(tmp_path):
    values = print_settings(
        "SECURE_SSL_REDIRECT SECURE_HSTS_SECONDS SECURE_HSTS_INCLUDE_SUBDOMAINS SECURE_HSTS_PRELOAD "
        "SESSION_COOKIE_SECURE CSRF_COOKIE_SECURE SECURE_PROXY_SSL_HEADER DEBUG",
        env=PRODUCTION,
        var_dir=tmp_path,
    )

    assert values == ["True", "31536000", "True", "False", "True", "True", "None", "False"]


def test_the_security_settings_come_from_the_environment(tmp_path):
    env = {
        **PRODUCTION,
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "300",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "false",
        "SECURE_HSTS_PRELOAD": "true",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto=https",
        "CSRF_TRUSTED_ORIGINS": "https://conveyor.example.com,https://admin.example.com",
    }

    values = print_settings(
        "SECURE_SSL_REDIRECT SECURE_HSTS_SECONDS SECURE_HSTS_INCLUDE_SUBDOMAINS SECURE_HSTS_PRELOAD "
        "SESSION_COOKIE_SECURE CSRF_COOKIE_SECURE SECURE_PROXY_SSL_HEADER CSRF_TRUSTED_ORIGINS",
        env=env,
        var_dir=tmp_path,
    )

    assert values == [
        "False",
        "300",
        "False",
        "True",
        "False",
        "False",
        "('HTTP_X_FORWARDED_PROTO', 'https')",
        "['https://conveyor.example.com', 'https://admin.example.com']",
    ]


def test_a_malformed_proxy_header_is_refused_with_its_name(tmp_path):
    result = manage("check", env={**PRODUCTION, "SECURE_PROXY_SSL_HEADER": "https"}, var_dir=tmp_path)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "conveyor: SECURE_PROXY_SSL_HEADER must look like X-Forwarded-Proto=https, got 'https'"
    ]


# --- development ---------------------------------------------------------------------


def test_development_generates_a_private_key_once_and_reuses_it(tmp_path):
    # Given an empty var directory and no SECRET_KEY
    env = {"CONVEYOR_ENV": None, "SECRET_KEY": None}

    # When Conveyor starts twice
    first_key, debug = print_settings("SECRET_KEY DEBUG", env=env, var_dir=tmp_path)
    key_file = tmp_path / "secret_key"
    first_mode = stat.S_IMODE(key_file.stat().st_mode)
    [second_key] = print_settings("SECRET_KEY", env=env, var_dir=tmp_path)

    # Then the first start wrote a long random key only its owner can read, and the second used it
    assert first_mode == 0o600
    assert first_key == key_file.read_text().strip()
    assert len(first_key) >= 50 and first_key != OLD_DEVELOPMENT_KEY
    assert second_key == first_key
    assert debug == "False"
    # The write's temporary file is gone
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".secret_key")] == []


def test_processes_starting_together_agree_on_one_development_key(tmp_path):
    env = {name: value for name, value in os.environ.items() if name not in MODE_VARIABLES}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", CONVEYOR_VAR_DIR=str(tmp_path))
    # The settings module alone: the key is made while it loads
    code = "import config.settings as settings; print(settings.SECRET_KEY)"

    starts = [
        subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    keys = {process.communicate(timeout=120)[0].strip() for process in starts}

    assert keys == {(tmp_path / "secret_key").read_text().strip()}


def test_development_uses_secret_key_when_set_and_writes_no_file(tmp_path):
    [key] = print_settings("SECRET_KEY", env={"SECRET_KEY": STRONG_KEY}, var_dir=tmp_path)

    assert key == STRONG_KEY
    assert not (tmp_path / "secret_key").exists()


def test_development_keeps_the_https_settings_off(tmp_path):
    values = print_settings(
        "SECURE_SSL_REDIRECT SECURE_HSTS_SECONDS SESSION_COOKIE_SECURE CSRF_COOKIE_SECURE DEBUG",
        env={},
        var_dir=tmp_path,
    )

    assert values == ["False", "0", "False", "False", "False"]


# --- the SSL redirect behind a proxy, through the real web server -------------------------


def production_server_env(var_dir: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CONVEYOR_VAR_DIR": str(var_dir),
        "CONVEYOR_ENV": "production",
        "SECRET_KEY": STRONG_KEY,
        "ALLOWED_HOSTS": "127.0.0.1",
        "METRICS_TOKEN": STRONG_METRICS_TOKEN,
    }


@pytest.fixture
def production_server(clean_redis: None, transactional_db: None, tmp_path: Path) -> Iterator[WebServer]:
    """uvicorn as ``make run`` starts it (``web_spec``), in production mode, on the test database."""
    server = WebServer(env=production_server_env(tmp_path)).start()
    yield server
    server.stop()


@pytest.fixture
def distrusting_server(
    clean_redis: None, transactional_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WebServer]:
    """The same server trusting only a proxy at 10.0.0.1, not this test's 127.0.0.1."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1")  # web_spec reads it in this process
    server = WebServer(env=production_server_env(tmp_path)).start()
    yield server
    server.stop()


def get(server: WebServer, path: str, headers: Mapping[str, str] | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", path, headers=dict(headers or {}))
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_plain_http_is_redirected_except_the_probes(production_server):
    api = get(production_server, "/api/jobs")
    assert api.status == 301
    assert api.getheader("Location") == f"https://127.0.0.1:{production_server.port}/api/jobs"

    health = get(production_server, "/workers/health")
    metrics = get(production_server, "/metrics", {"Authorization": f"Bearer {STRONG_METRICS_TOKEN}"})
    # Answered over plain HTTP (whatever the workers' health), and HSTS only goes out over HTTPS
    assert health.status in (200, 503) and health.getheader("Content-Type") == "application/json"
    assert metrics.status == 200 and metrics.getheader("Content-Type", "").startswith("text/plain")
    assert health.getheader("Strict-Transport-Security") is None


def test_the_proxys_https_header_counts_from_the_trusted_address(production_server):
    # The test connects from 127.0.0.1, the default FORWARDED_ALLOW_IPS: it plays the TLS proxy
    response = get(production_server, "/api/jobs", {"X-Forwarded-Proto": "https"})

    assert response.status in (401, 403)  # reached the API: not redirected
    assert response.getheader("Strict-Transport-Security") == "max-age=31536000; includeSubDomains"


def test_the_https_header_from_an_untrusted_address_is_ignored(distrusting_server):
    response = get(distrusting_server, "/api/jobs", {"X-Forwarded-Proto": "https"})

    assert response.status == 301
