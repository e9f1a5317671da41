"""Container healthchecks: ``python docker/healthcheck.py web|queue <name>|scheduler``.

``web``: this container's web server answers ``/workers/health`` with its JSON
report, and can reach the database and Redis (a 503 that only says some
queue has no live worker is still a working web server). Not ``/admin/login/``:
in production that redirects plain HTTP to HTTPS; ``/workers/health`` is
exempt from the redirect, for probes. ``queue <name>``: ``/workers/health``
(on the web service) counts a live worker for the queue, alive meaning
heartbeating *and* consuming (see ``jobs.ops.health``). ``scheduler``: a
canary schedule (every minute) was fired within the last ``max_age`` seconds.
Exit 0 when healthy.

Requests carry a ``Host`` header from ``ALLOWED_HOSTS``: production answers
400 to any other host name, such as ``web`` or ``127.0.0.1``.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

#: This container's own web server (the web role listens on every address, port 8000).
LOCAL_URL = os.environ.get("CONVEYOR_LOCAL_URL", "http://127.0.0.1:8000")
#: The web service, seen from the other containers.
WEB_URL = os.environ.get("CONVEYOR_WEB_URL", "http://web:8000")
HEALTH_PATH = "/workers/health"


def allowed_host() -> str:
    """A host name the site answers to: the first of ``ALLOWED_HOSTS`` (``localhost`` if none or ``*``)."""
    hosts = [host.strip() for host in os.environ.get("ALLOWED_HOSTS", "").split(",") if host.strip()]
    if not hosts or hosts[0] == "*":
        return "localhost"
    # ".example.com" allows example.com and its subdomains.
    return hosts[0].lstrip(".")


def _get(url: str) -> tuple[int, bytes]:
    # An http:// URL this script builds for its own service, never a caller's scheme.
    request = urllib.request.Request(url, headers={"Host": allowed_host()})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - our own service
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _health_report(base_url: str) -> dict[str, Any]:
    status, body = _get(base_url + HEALTH_PATH)
    if status not in (200, 503):
        raise RuntimeError(f"{HEALTH_PATH} answered {status}")
    return dict(json.loads(body))


def web_ok() -> bool:
    report = _health_report(LOCAL_URL)
    return report.get("database") == "ok" and report.get("redis") == "ok"


def queue_ok(queue: str) -> bool:
    return bool(_health_report(WEB_URL)["queues"][queue]["ok"])


def scheduler_ok(max_age_s: int = 180) -> bool:
    import django

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    django.setup()
    from datetime import timedelta

    from django.utils import timezone

    from jobs.models import ScheduleFire

    return ScheduleFire.objects.filter(fire_time__gte=timezone.now() - timedelta(seconds=max_age_s)).exists()


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["web"]:
            return 0 if web_ok() else 1
        if argv[:1] == ["queue"] and len(argv) == 2:
            return 0 if queue_ok(argv[1]) else 1
        if argv[:1] == ["scheduler"]:
            return 0 if scheduler_ok() else 1
    except Exception as exc:  # unhealthy, with the reason in `docker inspect`
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
