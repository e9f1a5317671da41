from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from documents.models import Document, DocumentPage


class DocumentPageSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = DocumentPage
        fields = ["number", "status", "source", "confidence", "error", "attempts"]


class DocumentSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """A document as the API shows it: no stored path or storage name, thumbnail URLs by size."""

    owner = serializers.CharField(source="owner.username", read_only=True)
    thumbnails = serializers.SerializerMethodField()
    text_url = serializers.SerializerMethodField()
    file_url = serializers.SerializerMethodField()
    ocr_job = serializers.UUIDField(source="ocr_job_id", read_only=True, allow_null=True)

    class Meta:
        model = Document
        fields = [
            "id",
            "owner",
            "original_name",
            "size",
            "sha256",
            "page_count",
            "status",
            "error",
            "ocr_job",
            "thumbnails",
            "text_url",
            "file_url",
            "created_at",
            "updated_at",
        ]

    def _url(self, name: str, *args: Any) -> str:
        path = reverse(name, args=args)
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_thumbnails(self, document: Document) -> dict[str, str]:
        return {str(size): self._url("document-thumbnail", document.id, size) for size in document.thumbnail_sizes()}

    def get_text_url(self, document: Document) -> str:
        return self._url("document-text", document.id)

    def get_file_url(self, document: Document) -> str:
        return self._url("document-file", document.id)


#: Pages the document detail lists; ``pages_url`` pages through all of them.
DETAIL_PAGES = 50


class DocumentDetailSerializer(DocumentSerializer):
    """The document with its first ``DETAIL_PAGES`` pages; ``pages_url`` lists them all, a page at a time."""

    pages = serializers.SerializerMethodField(help_text=f"The first {DETAIL_PAGES} pages, in order.")
    pages_url = serializers.SerializerMethodField(help_text="Every page, paginated (?page=N).")

    class Meta(DocumentSerializer.Meta):
        fields = [*DocumentSerializer.Meta.fields, "pages", "pages_url"]

    @extend_schema_field(DocumentPageSerializer(many=True))
    def get_pages(self, document: Document) -> Any:
        first = document.pages.order_by("number")[:DETAIL_PAGES]
        return DocumentPageSerializer(first, many=True).data

    def get_pages_url(self, document: Document) -> str:
        return self._url("document-pages", document.id)


class DocumentUploadSerializer(serializers.Serializer):  # type: ignore[type-arg]
    file = serializers.FileField(help_text="A PDF (checked by its content).")
