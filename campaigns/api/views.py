"""``/api/email-templates``: create, list, read and update templates, by model permission. No logic here."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import mixins, permissions, viewsets
from rest_framework.serializers import BaseSerializer

from campaigns.api.serializers import EmailTemplateSerializer
from campaigns.models import EmailTemplate
from jobs.public import AuditAction, ModelPermissions, Origin, Via, record_audit


class EmailTemplateViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    serializer_class = EmailTemplateSerializer
    # Staff with campaigns.view_emailtemplate read, with add_/change_ write: a template is mailed to everyone.
    permission_classes = [permissions.IsAdminUser, ModelPermissions]

    def get_queryset(self) -> QuerySet[EmailTemplate]:
        return EmailTemplate.objects.order_by("name", "id")

    def perform_create(self, serializer: BaseSerializer[EmailTemplate]) -> None:
        template = serializer.save()
        self._audit(AuditAction.TEMPLATE_CREATED, template)

    def perform_update(self, serializer: BaseSerializer[EmailTemplate]) -> None:
        template = serializer.save()
        self._audit(AuditAction.TEMPLATE_CHANGED, template)

    def _audit(self, action: AuditAction, template: EmailTemplate) -> None:
        origin = Origin.of_user(self.request.user, Via.API)
        record_audit(action, origin, "email template", template.pk, {"name": template.name})
