"""The job API: start a job, read its status, list, cancel, retry. No business logic here."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.core.access import may_set_high_priority, sees_everything, visible_to
from jobs.core.enums import JobPriority
from jobs.core.exceptions import JobNotCancellable, JobNotRetryable, UnknownJobType
from jobs.core.origin import Origin, Via
from jobs.dispatch import services
from jobs.dispatch.estimates import humanize_duration
from jobs.dispatch.registry import get_job_type
from jobs.models import Job
from jobs.web.api.serializers import (
    JobAcceptedSerializer,
    JobDetailSerializer,
    JobFilterSerializer,
    JobStatusSerializer,
)
from jobs.web.api.throttles import JobStartThrottle
from jobs.web.paging import BoundedCountPagination

IDEMPOTENCY_HEADER = "Idempotency-Key"


def visible_jobs(request: Request) -> QuerySet[Job]:
    """Staff see every job; anyone else only their own (others' answer 404)."""
    return visible_to(Job.objects.all(), request.user)


class JobStartView(APIView):
    """``POST /api/jobs/<type>``: record a job and answer 202 at once."""

    throttle_classes = [JobStartThrottle]

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={
            202: JobAcceptedSerializer,
            403: OpenApiResponse(
                OpenApiTypes.OBJECT, description="a staff-only job type, or `priority: high` without the permission"
            ),
            429: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description=(
                    "too many requests, or too many of your jobs of this type waiting (`limit` names the "
                    "setting); `Retry-After` says when to retry"
                ),
            ),
            503: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="the queue's backlog is at its ceiling (`limit` names the setting); `Retry-After`",
            ),
        },
        parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER, required=False)],
        summary="Start a job of the given type",
    )
    def post(self, request: Request, job_type: str) -> Response:
        try:
            kind = get_job_type(job_type, startable=True)
        except UnknownJobType:
            raise NotFound(f"unknown job type {job_type!r}") from None
        if kind.staff_only and not sees_everything(request.user):
            raise PermissionDenied(f"{job_type} jobs are for staff only")
        if kind.permission and not request.user.has_perm(kind.permission):
            raise PermissionDenied(f"{job_type} jobs need the {kind.permission} permission")
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["the body must be a JSON object"]})
        key = request.headers.get(IDEMPOTENCY_HEADER) or None
        if key is not None and len(key) > 128:
            raise ValidationError({IDEMPOTENCY_HEADER: ["at most 128 characters"]})
        if key is not None and "\x00" in key:
            # PostgreSQL text cannot hold a NUL. HTTP servers usually refuse such a header; in-process clients pass it.
            raise ValidationError({IDEMPOTENCY_HEADER: ["must not contain NUL characters"]})
        payload = kind.payload_serializer()(data=request.data, context={"request": request})
        payload.is_valid(raise_exception=True)
        if payload.validated_data.get("priority") == JobPriority.HIGH and not may_set_high_priority(request.user):
            # A tenant's high-priority job would wait ahead of everyone else's: staff, or a granted permission.
            raise PermissionDenied(
                {"priority": ["only staff or users with the jobs.set_high_priority permission may set high"]}
            )
        outcome = services.start_job(
            kind,
            request.user,
            dict(payload.validated_data),
            idempotency_key=key,
            origin=Origin.of_user(request.user, Via.API),
        )
        job = outcome.job
        estimate = job.estimated_duration_s or kind.default_duration_s
        # The body already has JobAcceptedSerializer's shape (the schema
        # documents it); building a serializer per request cost about as
        # much CPU as recording the job.
        body = {
            "job_id": str(job.id),
            "status": str(job.status),
            "status_url": request.build_absolute_uri(reverse("job-status", args=[job.id])),
            "estimated_duration": humanize_duration(estimate),
            "estimated_duration_s": round(estimate, 1),
            "created": outcome.created,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


class JobListView(generics.ListAPIView):  # type: ignore[type-arg]
    """``GET /api/jobs``: your jobs (staff: all), filtered and paginated."""

    serializer_class = JobStatusSerializer
    # `count` is exact up to 10,000 jobs and PostgreSQL's estimate beyond (jobs/web/paging.py).
    pagination_class = BoundedCountPagination

    @extend_schema(parameters=[JobFilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Job]:
        filters = JobFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        ordering = filters.validated_data.get("ordering", "-created_at")
        return visible_jobs(self.request).filter(**filters.filters()).order_by(ordering, "id")


class JobDetailView(generics.RetrieveAPIView):  # type: ignore[type-arg]
    """``GET /api/jobs/<id>``: the job with its arguments and attempt history."""

    serializer_class = JobDetailSerializer

    def get_queryset(self) -> QuerySet[Job]:
        return visible_jobs(self.request).prefetch_related("attempt_log")


class JobStatusView(generics.RetrieveAPIView):  # type: ignore[type-arg]
    """``GET /api/jobs/<id>/status``: status, progress and the time left."""

    serializer_class = JobStatusSerializer

    def get_queryset(self) -> QuerySet[Job]:
        return visible_jobs(self.request)


class JobCancelView(generics.GenericAPIView):  # type: ignore[type-arg]
    """``POST /api/jobs/<id>/cancel``: a waiting job never runs; a running one stops."""

    serializer_class = JobStatusSerializer

    def get_queryset(self) -> QuerySet[Job]:
        return visible_jobs(self.request)

    @extend_schema(request=None, responses={202: JobStatusSerializer, 409: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: str) -> Response:
        job = self.get_object()
        try:
            job = services.cancel_job(job, origin=Origin.of_user(request.user, Via.API))
        except JobNotCancellable as exc:
            return Response({"detail": f"cannot cancel: {exc}"}, status=status.HTTP_409_CONFLICT)
        return Response(JobStatusSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobRetryView(generics.GenericAPIView):  # type: ignore[type-arg]
    """``POST /api/jobs/<id>/retry``: send a failed or cancelled job again, same id."""

    serializer_class = JobStatusSerializer

    def get_queryset(self) -> QuerySet[Job]:
        return visible_jobs(self.request)

    @extend_schema(request=None, responses={202: JobStatusSerializer, 409: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: str) -> Response:
        job = self.get_object()
        try:
            job = services.retry_job(job, origin=Origin.of_user(request.user, Via.API))
        except JobNotRetryable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(JobStatusSerializer(job).data, status=status.HTTP_202_ACCEPTED)
