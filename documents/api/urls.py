from __future__ import annotations

from django.urls import path

from documents.api import views

urlpatterns = [
    path("documents", views.DocumentListView.as_view(), name="document-list"),
    path("documents/<uuid:pk>", views.DocumentDetailView.as_view(), name="document-detail"),
    path("documents/<uuid:pk>/pages", views.DocumentPagesView.as_view(), name="document-pages"),
    path("documents/<uuid:pk>/text", views.DocumentTextView.as_view(), name="document-text"),
    path("documents/<uuid:pk>/file", views.DocumentFileView.as_view(), name="document-file"),
    path(
        "documents/<uuid:pk>/thumbnails/<int:size>",
        views.DocumentThumbnailView.as_view(),
        name="document-thumbnail",
    ),
]
