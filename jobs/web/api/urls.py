from __future__ import annotations

from django.urls import path

from jobs.web.api import views

urlpatterns = [
    path("jobs", views.JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:pk>", views.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:pk>/status", views.JobStatusView.as_view(), name="job-status"),
    path("jobs/<uuid:pk>/cancel", views.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<uuid:pk>/retry", views.JobRetryView.as_view(), name="job-retry"),
    path("jobs/<slug:job_type>", views.JobStartView.as_view(), name="job-start"),
]
