"""``/api/email-templates``: staff create, list, read and update templates. No logic here."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import mixins, permissions, viewsets

from campaigns.api.serializers import EmailTemplateSerializer
from campaigns.models import EmailTemplate


class EmailTemplateViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    serializer_class = EmailTemplateSerializer
    permission_classes = [permissions.IsAdminUser]

    def get_queryset(self) -> QuerySet[EmailTemplate]:
        return EmailTemplate.objects.order_by("name", "id")
