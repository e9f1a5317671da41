from __future__ import annotations

from django.urls import path

from exports.api import views

urlpatterns = [
    path("exports", views.ExportListView.as_view(), name="export-list"),
    path("exports/<uuid:pk>", views.ExportDetailView.as_view(), name="export-detail"),
    path("exports/<uuid:pk>/download", views.ExportDownloadView.as_view(), name="export-download"),
]
