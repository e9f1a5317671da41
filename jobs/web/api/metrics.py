"""``GET /metrics``: Prometheus text format, behind a bearer token (``METRICS_TOKEN``).

No token configured: 404 (the endpoint does not exist). A request without a
bearer token: 401; with a wrong one: 403; both as JSON.

=================================  =========  ===========================  ======================================
name (as exposed)                  type       labels                       what
=================================  =========  ===========================  ======================================
conveyor_jobs_finished_total       counter    queue, type, origin, status  jobs that finished; status: completed,
                                                                           failed, cancelled
conveyor_job_retries_total         counter    queue, type, origin          finished jobs that needed more than
                                                                           one attempt
conveyor_job_duration_seconds      histogram  queue, type, origin          start-to-finish time of completed
                                                                           jobs: ``_bucket{le}`` (cumulative,
                                                                           ``+Inf``), ``_sum``, ``_count``
conveyor_jobs_unfinished           gauge      queue, type, status          jobs now queued, scheduled, active or
                                                                           retrying
conveyor_queue_depth               gauge      queue                        messages waiting in Redis
conveyor_workers                   gauge      queue                        live worker processes (heartbeating,
                                                                           consuming)
conveyor_canary_latency_seconds    gauge      queue                        send-to-pickup time of the latest
                                                                           canary
conveyor_redis_up                  gauge      (none)                       1 when Redis answered this scrape
conveyor_schedulers_live           gauge      (none)                       scheduler processes beating within
                                                                           SCHEDULER_ALIVE_HEARTBEAT_S (absent
                                                                           when Redis does not answer)
=================================  =========  ===========================  ======================================

``origin`` is whose work a job was (``jobs.core.origin.JobOrigin``):
``customer``, ``child``, ``schedule``, ``canary`` or ``maintenance``;
customer work is ``origin="customer"``, and a sum over origins gives every
job. The gauges are not split by origin.

The Redis-side gauges have no ``type``: Redis holds messages per queue, and
workers and canaries serve whole queues. The ``le`` bounds are
``jobs.ops.stats.DURATION_BOUNDS_S`` (a job exactly on a bound counts in the
next bucket up: the roll-ups' slots are upper-exclusive).

Counters and the histogram come from ``jobs.ops.counters.lifetime_totals``:
sealed hourly roll-ups (never pruned) plus a live count since the seal line,
so they only rise, outlive the monthly cleanup, and read the same from every
web process; they have no series before the first roll-up. Unfinished jobs
are counted through the ``(status, queue)`` index.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from itertools import accumulate

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from jobs.core.queues import queue_names
from jobs.models import Job, JobStatus
from jobs.ops.counters import BUCKET_LABELS, lifetime_totals
from jobs.ops.health import last_canary_latency_ms, live_workers, queue_depths
from jobs.ops.scheduling.presence import live_schedulers
from jobs.ops.stats import DURATION_BOUNDS_S, Totals

logger = logging.getLogger(__name__)

UNFINISHED = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.ACTIVE, JobStatus.RETRYING)
_LE = tuple(floatToGoString(bound) for bound in DURATION_BOUNDS_S) + ("+Inf",)


class ConveyorCollector(Collector):
    """Reads the job table, the roll-ups and Redis once per scrape."""

    def collect(self) -> Iterator[Metric]:
        totals = lifetime_totals()
        yield from self._counters(totals)
        yield self._unfinished(set(totals))
        yield from self._redis_side()
        yield from self._schedulers()

    def _counters(self, totals: dict[tuple[str, ...], Totals]) -> Iterator[Metric]:
        labels = list(BUCKET_LABELS)
        finished = CounterMetricFamily(
            "conveyor_jobs_finished_total",
            "Jobs that finished (completed, failed or cancelled), by queue, type, origin and final status",
            labels=[*labels, "status"],
        )
        retries = CounterMetricFamily(
            "conveyor_job_retries_total",
            "Finished jobs that needed more than one attempt, by queue, type and origin",
            labels=labels,
        )
        durations = HistogramMetricFamily(
            "conveyor_job_duration_seconds",
            "Start-to-finish time of completed jobs, by queue, type and origin",
            labels=labels,
        )
        for key, total in sorted(totals.items()):
            for status, count in (
                (JobStatus.COMPLETED, total.completed),
                (JobStatus.FAILED, total.failed),
                (JobStatus.CANCELLED, total.cancelled),
            ):
                finished.add_metric([*key, status.value], count)
            retries.add_metric(list(key), total.retried)
            # The last slot holds everything slower than the last bound: +Inf is the sum of all of them.
            cumulative = list(zip(_LE, accumulate(total.histogram), strict=True))
            durations.add_metric(list(key), cumulative, total.duration_sum_s)
        yield from (finished, retries, durations)

    def _unfinished(self, known: set[tuple[str, ...]]) -> Metric:
        jobs = GaugeMetricFamily(
            "conveyor_jobs_unfinished",
            "Jobs not finished yet, by queue, type and status",
            labels=["queue", "type", "status"],
        )
        counts = {
            (row["queue"], row["type"], row["status"]): row["n"]
            for row in Job.objects.filter(status__in=UNFINISHED)
            .values("queue", "type", "status")
            .annotate(n=Count("id"))
            .order_by()
        }
        # Every pair that ever ran shows 0 rather than vanishing when its last job finishes.
        pairs = {(queue, job_type) for queue, job_type, _ in counts} | {(key[0], key[1]) for key in known}
        for queue, job_type in sorted(pairs):
            for status in UNFINISHED:
                jobs.add_metric([queue, job_type, status.value], counts.get((queue, job_type, status), 0))
        return jobs

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
    # The classic text format (0.0.4), which every Prometheus reads: our names need none of 1.0.0's UTF-8 escaping.
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
