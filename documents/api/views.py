"""The documents API: upload, list, detail, text, thumbnails, the file. Owner or staff; others get 404."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from documents import services
from documents.api.serializers import (
    DocumentDetailSerializer,
    DocumentPageSerializer,
    DocumentSerializer,
    DocumentUploadSerializer,
)
from documents.exceptions import DocumentError, FileTooLarge
from documents.models import Document, DocumentPage, DocumentStatus
from jobs.public import TOO_MANY_REQUESTS, UploadThrottle, stored_file_response

# Multipart framing around the file: allowed on top of the size limit before parsing.
MULTIPART_SLACK_BYTES = 64 * 1024


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the file is too large"
    default_code = "too_large"


class DocumentListView(generics.ListCreateAPIView):  # type: ignore[type-arg]
    """``GET /api/documents``: your documents (staff: all). ``POST``: upload a PDF."""

    serializer_class = DocumentSerializer
    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [UploadThrottle]  # POST only: listing is not throttled

    def get_queryset(self) -> QuerySet[Document]:
        return services.visible_documents(self.request.user).select_related("owner").order_by("-created_at", "id")

    @extend_schema(
        request={"multipart/form-data": DocumentUploadSerializer},
        responses={201: DocumentSerializer, 429: TOO_MANY_REQUESTS},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.DOCUMENT_MAX_UPLOAD_BYTES + MULTIPART_SLACK_BYTES:
            # Refused before the body is read.
            raise PayloadTooLarge(f"the upload is over the {settings.DOCUMENT_MAX_UPLOAD_MB} MB limit")
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationError({"file": ["send the PDF as the multipart field 'file'"]})
        try:
            document = services.store_upload(request.user, upload)
        except FileTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from None
        except DocumentError as exc:
            raise ValidationError({"file": [str(exc)]}) from None
        body = DocumentSerializer(document, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED)


class VisibleDocumentView(generics.GenericAPIView):  # type: ignore[type-arg]
    """A view of one document the user may see: anyone else's answers 404."""

    serializer_class = DocumentSerializer

    def get_queryset(self) -> QuerySet[Document]:
        return services.visible_documents(self.request.user).select_related("owner")


class DocumentDetailView(VisibleDocumentView, generics.RetrieveAPIView):  # type: ignore[type-arg]
    """``GET /api/documents/<id>``: page count, status, pages and thumbnail URLs."""

    serializer_class = DocumentDetailSerializer


class DocumentPagesView(generics.ListAPIView):  # type: ignore[type-arg]
    """``GET /api/documents/<id>/pages?page=N``: the document's pages in order, paginated."""

    serializer_class = DocumentPageSerializer

    def get_queryset(self) -> QuerySet[DocumentPage]:
        document = get_object_or_404(services.visible_documents(self.request.user), pk=self.kwargs["pk"])
        return document.pages.order_by("number")


class DocumentTextView(VisibleDocumentView):
    """``GET /api/documents/<id>/text``: plain text, pages separated by a form feed."""

    @extend_schema(responses={(200, "text/plain"): str})
    def get(self, request: Request, pk: str) -> HttpResponse | Response:
        document = self.get_object()
        if document.status != DocumentStatus.READY:
            return Response(
                {"detail": f"the text is not available: the document is {document.status}"},
                status=status.HTTP_409_CONFLICT,
            )
        return HttpResponse(services.document_text(document), content_type="text/plain; charset=utf-8")


class DocumentThumbnailView(VisibleDocumentView):
    """``GET /api/documents/<id>/thumbnails/<size>``: the image, streamed from the storage."""

    @extend_schema(responses={(200, "image/png"): bytes, (200, "image/webp"): bytes})
    def get(self, request: Request, pk: str, size: int) -> StreamingHttpResponse:
        document = self.get_object()
        name = document.thumbnail_name(size)
        if name is None:
            raise NotFound(f"no {size} px thumbnail for this document")
        extension = "webp" if name.endswith(".webp") else "png"
        try:
            return stored_file_response(
                request,
                document.file.storage,
                name,
                content_type=f"image/{extension}",
                filename=f"{size}.{extension}",
                as_attachment=False,
            )
        except FileNotFoundError:
            raise NotFound(f"the {size} px thumbnail of this document is missing from the storage") from None


class DocumentFileView(VisibleDocumentView):
    """``GET /api/documents/<id>/file``: the uploaded PDF, streamed from the storage."""

    @extend_schema(responses={(200, "application/pdf"): bytes})
    def get(self, request: Request, pk: str) -> StreamingHttpResponse:
        document = self.get_object()
        missing = NotFound("the stored file of this document is missing")
        if not document.file:
            raise missing
        try:
            return stored_file_response(
                request,
                document.file.storage,
                document.file.name,
                content_type="application/pdf",
                filename=document.original_name,
                as_attachment=True,
            )
        except FileNotFoundError:
            raise missing from None
