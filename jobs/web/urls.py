"""URLs of the pages in ``jobs.web.views`` (and the sign-in they need)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from jobs.web.views import job_page_state, job_progress_page

urlpatterns = [
    path("jobs/<uuid:job_id>/", job_progress_page, name="job-progress"),
    path("jobs/<uuid:job_id>/state", job_page_state, name="job-page-state"),
    # LOGIN_URL's default: where login_required sends people who are not signed in.
    path("accounts/login/", auth_views.LoginView.as_view(template_name="jobs/login.html"), name="login"),
]
