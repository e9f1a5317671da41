"""Container healthchecks: ``python docker/healthcheck.py web|queue <name>|scheduler``.

``web``: the web server answers. ``queue <name>``: ``/workers/health`` (on the
web service) counts a live worker for the queue, alive meaning heartbeating
*and* consuming (see ``jobs.ops.health``). ``scheduler``: a canary schedule (every
minute) was fired within the last ``max_age`` seconds. Exit 0 when healthy.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

WEB_URL = os.environ.get("CONVEYOR_WEB_URL", "http://web:8000")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own service
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def web_ok() -> bool:
    status, _ = _get("http://127.0.0.1:8000/admin/login/")
    return status == 200


def queue_ok(queue: str) -> bool:
    _, body = _get(f"{WEB_URL}/workers/health")
    return bool(json.loads(body)["queues"][queue]["ok"])


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
