"""``GET /workers/health``: public, no secrets; 503 when something a job needs is missing.

Missing: the database, Redis, a live worker for some queue (``queues.<name>.ok``
false) or a live scheduler (``schedulers.ok`` false; ``schedulers.processes``
lists each one's host, pid and last beat).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from jobs.ops.health import cached_health_report


@require_GET
def workers_health(request: HttpRequest) -> JsonResponse:
    # Probes may come many times a second: one report per HEALTH_CACHE_S per web process.
    ok, report = cached_health_report()
    return JsonResponse(report, status=200 if ok else 503)
