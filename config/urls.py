from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from jobs.web.api.health import workers_health
from jobs.web.api.metrics import metrics
from jobs.web.api.tokens import RevokeAllTokens, RevokeToken, WebSocketTicket, obtain_auth_token

urlpatterns = [
    # The queue overview lives under the admin (its login, its look); before admin/ so it is matched first.
    path("admin/queues/", include("jobs.web.console")),
    path("admin/", admin.site.urls),
    path("workers/health", workers_health, name="workers-health"),
    path("metrics", metrics, name="metrics"),
    path("api/auth/token", obtain_auth_token, name="api-token"),
    path("api/auth/logout", RevokeToken.as_view(), name="api-logout"),
    path("api/auth/logout-all", RevokeAllTokens.as_view(), name="api-logout-all"),
    path("api/auth/ws-ticket", WebSocketTicket.as_view(), name="api-ws-ticket"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Redoc's own template links Google Fonts; ours loads nothing from outside the host.
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html"),
        name="api-redoc",
    ),
    path("api/", include("jobs.web.api.urls")),
    path("api/", include("documents.api.urls")),
    path("api/", include("campaigns.api.urls")),
    path("api/", include("exports.api.urls")),
    path("", include("jobs.web.urls")),  # /jobs/<id>/ (live progress page), /accounts/login/
]

handler404 = "jobs.web.api.errors.not_found"
handler500 = "jobs.web.api.errors.server_error"
