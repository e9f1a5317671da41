"""docker/: the compose file is valid for Debian's docker-compose, safe, and runs the topology test's commands.

No Docker engine runs here: the compose file is validated and resolved with
``docker-compose config`` and compared with ``tests/topology/commands.py``
(the commands the topology test's hosts run) and the queue table; the image is
not built, so its Dockerfile, build context and lock files are read instead.
"""

from __future__ import annotations

import ast
import fnmatch
import http.server
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import tomllib
from collections import Counter
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from jobs.core.queues import all_queues
from jobs.management.commands.runconveyor import Command as RunConveyor
from jobs.ops.supervisor import web_spec
from tests.topology.commands import release_command, role_command

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
#: The production default of WORKER_SHUTDOWN_GRACE_S (the tests' settings shorten it), and Dramatiq's margin.
SHUTDOWN_GRACE_S = 25.0
DRAMATIQ_MARGIN_S = 10.0
#: Packages only tests, benchmarks and the type checker use: never in the image.
DEV_ONLY = ("pytest", "playwright", "celery", "rq", "moto", "mypy", "schemathesis", "pypdf")

#: Every variable the compose file requires, with values production mode accepts.
COMPOSE_ENV = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "conveyor.example.com",
    "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
    "REDIS_PASSWORD": secrets.token_urlsafe(16),
    "MINIO_ROOT_USER": "minio-root",
    "MINIO_ROOT_PASSWORD": secrets.token_urlsafe(16),
    "AWS_ACCESS_KEY_ID": "conveyor-app",
    "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(16),
    "REDIS_COMMANDER_USER": "operator",
    "REDIS_COMMANDER_PASSWORD": secrets.token_urlsafe(16),
}


def _compose_config(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("docker-compose"), "Debian's docker-compose is installed by scripts/bootstrap.sh"
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", *args],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The services as docker-compose resolves them (anchors merged, variables filled in)."""
    result = _compose_config(COMPOSE_ENV)
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout)["services"])


@pytest.fixture(scope="module")
def app_services(services: dict[str, Any]) -> dict[str, Any]:
    """The services that run the Conveyor image."""
    app = {name: service for name, service in services.items() if "build" in service}
    assert {"release", "web", "scheduler"} <= set(app)
    return app


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, f"unexpected duration {duration!r}"
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


# --- the compose file ------------------------------------------------------------------


def test_compose_file_is_valid():
    result = _compose_config(COMPOSE_ENV, "-q")

    assert result.returncode == 0, result.stderr


def test_compose_file_uses_the_compose_specification_without_a_version_key():
    raw = yaml.safe_load(COMPOSE.read_text())

    assert "version" not in raw
    assert "services" in raw


@pytest.mark.parametrize(
    "variable",
    [
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "REDIS_COMMANDER_PASSWORD",
    ],
)
def test_compose_refuses_to_start_without_a_secret(variable):
    env = {name: value for name, value in COMPOSE_ENV.items() if name != variable}

    result = _compose_config(env, "-q")

    assert result.returncode != 0
    assert variable in result.stderr


def test_postgres_has_no_default_password(services, app_services):
    password = COMPOSE_ENV["POSTGRES_PASSWORD"]

    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    for name, service in app_services.items():
        assert f"conveyor:{password}@postgres:5432/" in service["environment"]["DATABASE_URL"], name


def test_redis_requires_its_password_and_every_client_gives_it(services, app_services):
    password = COMPOSE_ENV["REDIS_PASSWORD"]
    redis = services["redis"]

    command = redis["command"]
    assert command[command.index("--requirepass") + 1] == password
    # The healthcheck's redis-cli authenticates (REDISCLI_AUTH) and needs the PONG
    assert redis["environment"]["REDISCLI_AUTH"] == password
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    assert "PONG" in " ".join(redis["healthcheck"]["test"])
    for name, service in app_services.items():
        assert service["environment"]["REDIS_URL"] == f"redis://:{password}@redis:6379/0", name
    assert services["redis-commander"]["environment"]["REDIS_PASSWORD"] == password


def test_redis_keeps_every_queued_job(services):
    command = services["redis"]["command"]

    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "--maxmemory" in command


def test_redis_commander_runs_only_in_the_debug_profile_behind_a_password(services):
    commander = services["redis-commander"]

    assert commander["profiles"] == ["debug"]
    assert commander["environment"]["HTTP_USER"] == COMPOSE_ENV["REDIS_COMMANDER_USER"]
    assert commander["environment"]["HTTP_PASSWORD"] == COMPOSE_ENV["REDIS_COMMANDER_PASSWORD"]
    assert all(port.startswith("127.0.0.1:") for port in commander["ports"])
    # Nothing else hides behind a profile: a plain `up` starts the whole system
    assert [name for name, service in services.items() if service.get("profiles")] == ["redis-commander"]


def test_minio_holds_the_files_in_a_bucket_the_app_is_given(services, app_services):
    minio, init = services["minio"], services["minio-init"]
    bucket = "conveyor"

    assert minio["image"].startswith("minio/minio")
    assert minio["command"][:2] == ["server", "/data"]
    assert init["image"].startswith("minio/mc")
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    script = "\n".join(init["command"])
    assert 'mc mb --ignore-existing "store/$$BUCKET"' in script
    assert init["environment"]["BUCKET"] == bucket
    assert init["environment"]["APP_ACCESS_KEY"] == COMPOSE_ENV["AWS_ACCESS_KEY_ID"]
    for name, service in app_services.items():
        env = service["environment"]
        assert env["AWS_STORAGE_BUCKET_NAME"] == bucket, name
        assert env["AWS_S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert env["AWS_ACCESS_KEY_ID"] == COMPOSE_ENV["AWS_ACCESS_KEY_ID"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == COMPOSE_ENV["AWS_SECRET_ACCESS_KEY"], name
        if name != "release":  # the release step touches no file
            assert service["depends_on"]["minio-init"]["condition"] == "service_completed_successfully", name


def test_every_app_service_runs_in_production_mode(app_services):
    for name, service in app_services.items():
        assert service["environment"]["CONVEYOR_ENV"] == "production", name


def test_the_compose_environment_passes_production_modes_checks(app_services, tmp_path):
    """The web service's environment, as given: production starts, and every Redis user gets the password."""
    env = {
        "PATH": os.environ["PATH"],
        **app_services["web"]["environment"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CONVEYOR_VAR_DIR": str(tmp_path),
    }
    manage = [sys.executable, str(ROOT / "manage.py")]

    check = subprocess.run(
        [*manage, "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    code = (
        "import json; from django.conf import settings; from campaigns.ratelimit import redis_client; "
        "print(json.dumps({'broker': settings.DRAMATIQ_BROKER['OPTIONS']['url'], "
        "'channels': settings.CHANNEL_LAYERS['default']['CONFIG']['hosts'], "
        "'limiter': redis_client().connection_pool.connection_kwargs.get('password'), "
        "'storage': settings.STORAGES['default']['BACKEND']}))"
    )
    shown = subprocess.run(
        [*manage, "shell", "--no-imports", "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert check.returncode == 0, check.stdout + check.stderr
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    redis_url = f"redis://:{COMPOSE_ENV['REDIS_PASSWORD']}@redis:6379/0"
    assert report == {
        "broker": redis_url,
        "channels": [redis_url],
        "limiter": COMPOSE_ENV["REDIS_PASSWORD"],
        "storage": "storages.backends.s3.S3Storage",
    }


# --- the commands: the topology test's, one role or queue per service ------------------------


def _parse_role_command(command: list[str]) -> tuple[list[str], list[str] | None]:
    """The roles and queues of a ``role_command``; fails on anything role_command would not build."""
    roles: list[str] = []
    queues: list[str] | None = None
    args = command[3:]
    while args:
        option, value, args = args[0], args[1], args[2:]
        if option == "--role":
            roles.append(value)
        elif option == "--queues":
            queues = value.split(",")
        else:
            raise AssertionError(f"unexpected option {option!r} in {command}")
    assert command == role_command(roles, queues), f"{command} is not role_command({roles}, {queues})"
    return roles, queues


def test_every_app_service_runs_a_command_of_the_topology_test(app_services):
    covered: Counter[str] = Counter()
    every_queue = [policy.name for policy in all_queues()]
    for name, service in app_services.items():
        command = service["command"]
        if command == release_command():
            covered["release"] += 1
            continue
        assert command[:3] == ["python", "manage.py", "runconveyor"], f"{name}: {command}"
        roles, queues = _parse_role_command(command)
        for role in roles:
            if role == "workers":
                covered.update(f"queue:{queue}" for queue in (queues or every_queue))
            else:
                covered[role] += 1

    # Together: the release step, the web server, the scheduler and every queue, each exactly once
    expected = {"release": 1, "web": 1, "scheduler": 1, **{f"queue:{queue}": 1 for queue in every_queue}}
    assert dict(covered) == expected


def test_each_worker_service_is_named_after_its_queue_and_checks_that_queue(app_services):
    for name, service in app_services.items():
        if not name.startswith("worker-"):
            continue
        roles, queues = _parse_role_command(service["command"])
        assert roles == ["workers"] and queues == [name.removeprefix("worker-")]
        assert service["healthcheck"]["test"] == ["CMD", "python", "docker/healthcheck.py", "queue", queues[0]]
    assert {name for name in app_services if name.startswith("worker-")} == {
        f"worker-{policy.name}" for policy in all_queues()
    }


def test_docker_waits_for_runconveyor_to_stop_its_processes(app_services):
    """SIGTERM reaches runconveyor, which gives each process its stop timeout: Docker waits longer."""
    stop_timeout = RunConveyor().create_parser("manage.py", "runconveyor").parse_args([]).stop_timeout
    assert stop_timeout > SHUTDOWN_GRACE_S + DRAMATIQ_MARGIN_S

    for name, service in app_services.items():
        if name == "release":
            continue
        assert service["init"] is True, name
        assert _seconds(service["stop_grace_period"]) > stop_timeout, name


def test_the_web_role_listens_for_the_proxy_as_the_environment_says(app_services, monkeypatch):
    env = app_services["web"]["environment"]
    for variable in ("HOST", "PORT", "WEB_WORKERS", "FORWARDED_ALLOW_IPS"):
        monkeypatch.setenv(variable, env[variable])

    argv = list(web_spec().argv)

    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--port") + 1] == "8000"
    assert argv[argv.index("--workers") + 1] == "2"
    assert "--proxy-headers" in argv
    assert argv[argv.index("--forwarded-allow-ips") + 1] == "127.0.0.1"
    assert app_services["web"]["ports"][0]["target"] == 8000


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in services.items():
        if name in ("release", "minio-init"):  # one-shots: they run and exit
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


# --- the healthchecks ---------------------------------------------------------------------


def _load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conveyor_docker_healthcheck", DOCKER / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _HealthServer(http.server.ThreadingHTTPServer):
    """Answers every GET with ``status`` and ``report``, and remembers what was asked."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HealthHandler)
        self.status = 200
        self.report: dict[str, Any] = {}
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _HealthHandler(http.server.BaseHTTPRequestHandler):
    server: _HealthServer

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.server.requests.append((self.path, self.headers.get("Host")))
        body = json.dumps(self.server.report).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server API
        pass


@pytest.fixture
def health_server() -> Iterator[_HealthServer]:
    server = _HealthServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_web_healthcheck_asks_workers_health_with_an_allowed_host_not_the_admin(health_server, monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", "conveyor.example.com,.example.org")
    healthcheck = _load_healthcheck()
    monkeypatch.setattr(healthcheck, "LOCAL_URL", health_server.url)
    # A queue without a live worker makes /workers/health answer 503: the web server itself is fine
    health_server.status = 503
    health_server.report = {"database": "ok", "redis": "ok", "queues": {"thumbnails": {"ok": False}}}

    assert healthcheck.main(["web"]) == 0
    assert health_server.requests == [("/workers/health", "conveyor.example.com")]

    health_server.report = {"database": "unreachable", "redis": "ok", "queues": {}}
    assert healthcheck.main(["web"]) == 1
    # A redirect (what /admin/login/ answers over plain HTTP in production) is unhealthy
    health_server.status = 301
    assert healthcheck.main(["web"]) == 1
    assert not any(path.startswith("/admin") for path, _ in health_server.requests)


def test_queue_healthcheck_reads_its_queue_from_the_web_service(health_server, monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", ".example.com")
    healthcheck = _load_healthcheck()
    monkeypatch.setattr(healthcheck, "WEB_URL", health_server.url)
    health_server.status = 503
    health_server.report = {
        "database": "ok",
        "redis": "ok",
        "queues": {"thumbnails": {"ok": True}, "csv-export": {"ok": False}},
    }

    assert healthcheck.main(["queue", "thumbnails"]) == 0
    assert healthcheck.main(["queue", "csv-export"]) == 1
    assert health_server.requests[0] == ("/workers/health", "example.com")


# --- the image: runtime dependencies only, no tests -----------------------------------------


def test_image_has_the_ocr_tools_and_collects_static_files():
    dockerfile = (DOCKER / "Dockerfile").read_text()

    assert "FROM python:3.11-slim-bookworm" in dockerfile
    for package in ("tesseract-ocr", "tesseract-ocr-eng", "poppler-utils"):
        assert package in dockerfile
    assert "manage.py collectstatic --noinput" in dockerfile


def test_image_installs_only_the_runtime_lock_with_hashes():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    installs = [line.strip() for line in dockerfile.splitlines() if "pip install" in line]

    assert installs == ["RUN pip install --require-hashes --no-deps -r requirements.lock"]
    assert "requirements-dev.lock" not in dockerfile


def _dockerignore_patterns() -> list[str]:
    lines = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    return [line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")]


def _in_build_context(relative: Path) -> bool:
    """Whether the build context keeps this file (the plain patterns this project's dockerignore uses)."""
    patterns = _dockerignore_patterns()
    assert not any(pattern.startswith("!") for pattern in patterns), "exceptions are not handled here"
    parts = relative.parts
    for pattern in patterns:
        for depth in range(1, len(parts) + 1):
            if fnmatch.fnmatch("/".join(parts[:depth]), pattern):
                return False
        if pattern.startswith("**/") and any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
            return False
    return True


def test_build_context_leaves_out_tests_benchmarks_and_development_files():
    for path in ("tests/conftest.py", "bench/throughput.py", "requirements-dev.lock", ".ci/run", ".venv/bin/python"):
        assert not _in_build_context(Path(path)), path
    for path in (
        "manage.py",
        "requirements.lock",
        "config/settings.py",
        "jobs/ops/supervisor.py",
        "docker/healthcheck.py",
    ):
        assert _in_build_context(Path(path)), path


def _imported_or_named_modules(source: str) -> set[str]:
    """Modules a file imports, and dotted names in its strings (settings name apps and classes so)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+", node.value):
                names.add(node.value)
    return names


def _build_context_python_files() -> list[Path]:
    shipped: list[Path] = []
    for directory, subdirectories, files in os.walk(ROOT):
        relative = Path(directory).relative_to(ROOT)
        subdirectories[:] = [name for name in subdirectories if _in_build_context(relative / name)]
        shipped.extend(ROOT / relative / name for name in files if name.endswith(".py"))
    return [path for path in shipped if _in_build_context(path.relative_to(ROOT))]


def test_nothing_in_the_image_uses_tests_or_benchmarks():
    shipped = _build_context_python_files()
    assert ROOT / "config" / "settings.py" in shipped and ROOT / "manage.py" in shipped

    for path in shipped:
        for module in _imported_or_named_modules(path.read_text()):
            top = module.split(".")[0]
            assert top not in ("tests", "bench"), f"{path.relative_to(ROOT)} uses {module}"


# --- the locks ---------------------------------------------------------------------------------

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lock: Path) -> dict[str, tuple[str, str]]:
    """``normalized name: (version, the whole entry)``, continuation lines joined; each entry must be a pin."""
    entries: dict[str, tuple[str, str]] = {}
    logical = ""
    for line in lock.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        logical += line.rstrip("\\").strip() + " "
        if line.endswith("\\"):
            continue
        match = _PIN.match(logical)
        assert match, f"{lock.name}: not a pin: {logical}"
        name = _normalized(match.group(1))
        assert name not in entries, f"{lock.name} pins {name} twice"
        entries[name] = (match.group(2), logical.strip())
        logical = ""
    assert not logical, f"{lock.name} ends inside an entry"
    return entries


def test_every_pin_of_both_locks_has_its_hashes():
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        pins = _pins(lock)
        assert pins, lock.name
        for name, (_, entry) in pins.items():
            assert re.search(r"--hash=sha256:[0-9a-f]{64}\b", entry), f"{lock.name}: {name} has no hash"


def test_runtime_lock_has_no_development_package():
    runtime = _pins(RUNTIME_LOCK)

    for package in DEV_ONLY:
        assert package not in runtime, f"requirements.lock pins {package}, which only development needs"


def _declared(requirements: list[str]) -> dict[str, str]:
    """``normalized name: version`` of pyproject's exact pins (``name[extras]==version``)."""
    declared = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", requirement)
        assert match, f"pyproject.toml: {requirement!r} is not an exact pin"
        declared[_normalized(match.group(1))] = match.group(2)
    return declared


def test_the_locks_pin_each_package_once_at_pyprojects_versions():
    runtime, dev = _pins(RUNTIME_LOCK), _pins(DEV_LOCK)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    assert not set(runtime) & set(dev), "pinned in both locks"
    for name, version in _declared(project["dependencies"]).items():
        assert runtime.get(name, ("missing",))[0] == version, f"requirements.lock: {name}"
    for name, version in _declared(project["optional-dependencies"]["dev"]).items():
        assert {**runtime, **dev}.get(name, ("missing",))[0] == version, f"requirements-dev.lock: {name}"
    for package in DEV_ONLY:
        assert package in dev, f"{package} is not in requirements-dev.lock"


def test_dramatiqs_watch_extra_is_gone():
    """Nothing runs Dramatiq with --watch: its file watcher (watchdog) is installed nowhere."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    (dramatiq,) = [r for r in project["dependencies"] if _normalized(re.split(r"[\[=]", r)[0]) == "dramatiq"]
    assert dramatiq.startswith("dramatiq[redis]==")
    assert "watchdog" not in _pins(RUNTIME_LOCK) and "watchdog" not in _pins(DEV_LOCK)


def test_the_installed_virtualenv_matches_the_locks():
    """The locks and the virtualenv the tests run in (CI's, from scripts/bootstrap.sh) agree."""
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        for name, (version, _) in _pins(lock).items():
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                installed = "not installed"
            assert installed == version, f"{lock.name} pins {name}=={version}; the virtualenv has {installed}"
