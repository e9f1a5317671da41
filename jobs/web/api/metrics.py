"""``GET /metrics``: Prometheus text format, behind a bearer token (``METRICS_TOKEN``).

No token configured: 404 (the endpoint does not exist). A request without a
bearer token: 401; with a wrong one: 403; both as JSON.

Every query is cheap on a job table of millions of rows: unfinished jobs are
counted through the (status, queue) index; finished jobs, durations and
retries only over jobs created within ``METRICS_DURATION_WINDOW_S`` (the
created_at index).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from jobs.core.origin import JobOrigin
from jobs.core.queues import queue_names
from jobs.models import TERMINAL_STATUSES, Job, JobStatus
from jobs.ops.health import last_canary_latency_ms, live_workers, queue_depths
from jobs.ops.scheduling.presence import live_schedulers
from jobs.ops.stats import recent_job_counts

logger = logging.getLogger(__name__)

#: Upper bounds (seconds) of the job duration histogram buckets.
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
UNFINISHED = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.ACTIVE, JobStatus.RETRYING)


class ConveyorCollector(Collector):
    """Reads the job table and Redis once per scrape."""

    def collect(self) -> Iterator[Metric]:
        since = timezone.now() - timedelta(seconds=settings.METRICS_DURATION_WINDOW_S)
        window = f"{settings.METRICS_DURATION_WINDOW_S} s"
        yield from self._unfinished()
        yield from self._finished(since, window)
        yield self._durations(since, window)
        yield from self._redis_side()
        yield from self._schedulers()

    def _unfinished(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "conveyor_jobs_unfinished", "Jobs not finished yet, by queue and status", labels=["queue", "status"]
        )
        counts = {
            (row["queue"], row["status"]): row["n"]
            for row in Job.objects.filter(status__in=UNFINISHED)
            .values("queue", "status")
            .annotate(n=Count("id"))
            .order_by()
        }
        for queue in queue_names():
            for status in UNFINISHED:
                jobs.add_metric([queue, status], counts.get((queue, status), 0))
        yield jobs

    def _finished(self, since: datetime, window: str) -> Iterator[Metric]:
        # Per origin (customer, child, schedule, canary, maintenance), counted by jobs.ops.stats:
        # customer work is `origin="customer"`, and a sum over origins gives every job.
        finished = GaugeMetricFamily(
            "conveyor_jobs_finished",
            f"Jobs created within the last {window} that have finished, by queue, status and origin",
            labels=["queue", "status", "origin"],
        )
        retries = GaugeMetricFamily(
            "conveyor_job_retries",
            f"Attempts beyond the first, of jobs created within the last {window}, by queue and origin",
            labels=["queue", "origin"],
        )
        counts = recent_job_counts(since)
        for queue in queue_names():
            for origin in JobOrigin.values:
                for status in TERMINAL_STATUSES:
                    finished.add_metric([queue, status, origin], counts.finished.get((queue, origin, status), 0))
                retries.add_metric([queue, origin], counts.extra_attempts.get((queue, origin), 0))
        yield finished
        yield retries

    def _durations(self, since: object, window: str) -> Metric:
        histogram = HistogramMetricFamily(
            "conveyor_job_duration_seconds",
            f"Start-to-finish time of jobs completed, created within the last {window}, by type",
            labels=["type"],
        )
        duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        buckets = {
            f"le_{index}": Count("id", filter=Q(duration__lte=timedelta(seconds=bound)))
            for index, bound in enumerate(DURATION_BUCKETS)
        }
        rows = (
            Job.objects.filter(
                created_at__gte=since,
                status=JobStatus.COMPLETED,
                started_at__isnull=False,
                finished_at__isnull=False,
            )
            .annotate(duration=duration)
            .values("type")
            .annotate(count=Count("id"), total=Sum("duration"), **buckets)
            .order_by("type")
        )
        for row in rows:
            cumulative = [(str(float(bound)), row[f"le_{index}"]) for index, bound in enumerate(DURATION_BUCKETS)]
            cumulative.append(("+Inf", row["count"]))
            total = row["total"].total_seconds() if row["total"] is not None else 0.0
            histogram.add_metric([row["type"]], cumulative, total)
        return histogram

    def _redis_side(self) -> Iterator[Metric]:
        redis_up = GaugeMetricFamily("conveyor_redis_up", "1 when Redis answered this scrape")
        depth = GaugeMetricFamily("conveyor_queue_depth", "Messages waiting in Redis, by queue", labels=["queue"])
        workers = GaugeMetricFamily(
            "conveyor_workers", "Live worker processes (heartbeating and consuming), by queue", labels=["queue"]
        )
        latency = GaugeMetricFamily(
            "conveyor_canary_latency_seconds", "Send-to-pickup time of the latest canary, by queue", labels=["queue"]
        )
        try:
            depths = queue_depths()
            alive = live_workers()
        except Exception as exc:
            logger.warning("Metrics: Redis unreachable: %s", exc)
            redis_up.add_metric([], 0)
            yield redis_up
            return
        redis_up.add_metric([], 1)
        for queue in queue_names():
            depth.add_metric([queue], depths.get(queue, 0))
            workers.add_metric([queue], sum(1 for worker in alive if queue in worker.get("queues", [])))
        for queue, milliseconds in last_canary_latency_ms().items():
            latency.add_metric([queue], milliseconds / 1000)
        yield from (redis_up, depth, workers, latency)

    def _schedulers(self) -> Iterator[Metric]:
        # Alerts run inside the schedulers: with none live only a prober reading this can tell
        # (docker/prometheus/alerts.yml). Left out when Redis does not answer (conveyor_redis_up says so).
        try:
            live = len(live_schedulers())
        except Exception as exc:
            logger.warning("Metrics: scheduler presence unreadable: %s", exc)
            return
        gauge = GaugeMetricFamily(
            "conveyor_schedulers_live", "Scheduler processes that beat within SCHEDULER_ALIVE_HEARTBEAT_S"
        )
        gauge.add_metric([], live)
        yield gauge


def _bearer_token(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    expected = settings.METRICS_TOKEN
    if not expected:
        return JsonResponse({"detail": "metrics are off: METRICS_TOKEN is not set"}, status=404)
    token = _bearer_token(request)
    if token is None:
        response = JsonResponse({"detail": "Authorization: Bearer <METRICS_TOKEN> required"}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return JsonResponse({"detail": "wrong metrics token"}, status=403)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConveyorCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
