"""docker/: the compose file is valid for Debian's docker-compose and runs what `make run` runs.

No Docker engine runs here: the file is validated with ``docker-compose config``
and compared with ``jobs.ops.supervisor``'s commands and the queue table; the image
is not built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.core.queues import all_queues
from jobs.ops.supervisor import pool_spec, scheduler_spec, web_spec

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker" / "docker-compose.yml"
#: The production default of WORKER_SHUTDOWN_GRACE_S (the tests' settings shorten it).
SHUTDOWN_GRACE_S = 25.0


def _compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("docker-compose"), "Debian's docker-compose is installed by scripts/bootstrap.sh"
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    result = _compose_config(SECRET_KEY="compose-test")
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout)["services"])


def _manage_py(argv: list[str]) -> list[str]:
    """A supervisor command as the container runs it: `python manage.py ...` in /app."""
    return ["python", "manage.py", *argv[2:]]


def test_compose_file_is_valid():
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        env={"PATH": os.environ["PATH"], "SECRET_KEY": "compose-test"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_secret_key():
    result = _compose_config()
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr


def test_every_queue_has_a_worker_service_running_the_make_run_command(services):
    for policy in all_queues():
        service = services.get(f"worker-{policy.name}")
        assert service is not None, f"no worker service for queue {policy.name}"
        spec = pool_spec(policy, shutdown_grace_s=SHUTDOWN_GRACE_S, nice=0)
        assert service["command"] == _manage_py(list(spec.argv))
        assert service["environment"]["dramatiq_queue_prefetch"] == spec.env["dramatiq_queue_prefetch"]
        # Docker waits past the shutdown grace and Dramatiq's own timeout before it kills
        assert int(service["stop_grace_period"].rstrip("s")) > SHUTDOWN_GRACE_S + 10
    workers = {name for name in services if name.startswith("worker-")}
    assert workers == {f"worker-{policy.name}" for policy in all_queues()}


def test_web_and_scheduler_run_the_make_run_commands(services):
    web = web_spec(host="0.0.0.0", port=8000, workers=2)
    assert services["web"]["command"] == ["python", *web.argv[1:]]
    assert services["scheduler"]["command"] == _manage_py(list(scheduler_spec().argv))


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in services.items():
        if name == "migrate":  # a one-shot: runs migrations and exits
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


def test_redis_keeps_every_queued_job(services):
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "--maxmemory" in command
    assert {"postgres", "redis", "web", "scheduler", "redis-commander"} <= set(services)


def test_image_has_the_ocr_tools_and_the_locked_requirements():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim-bookworm" in dockerfile
    for package in ("tesseract-ocr", "tesseract-ocr-eng", "poppler-utils"):
        assert package in dockerfile
    assert "pip install -r requirements.lock" in dockerfile
