from __future__ import annotations

from typing import Any

from rest_framework import serializers

from campaigns.models import EmailTemplate
from campaigns.rendering import TemplateInvalid, check_template


class EmailTemplateSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = EmailTemplate
        fields = ["id", "name", "subject", "body_text", "body_html", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Reject a template that does not compile, or fails or goes over budget with the sample context (by field)."""
        current = self.instance
        parts = {
            name: attrs.get(name, getattr(current, name, "") if current is not None else "")
            for name in ("subject", "body_text", "body_html")
        }
        try:
            # The sample context sending checks against too: plain data, never the requesting user.
            check_template(parts["subject"], parts["body_text"], parts["body_html"] or "")
        except TemplateInvalid as exc:
            raise serializers.ValidationError(exc.errors) from exc
        return attrs
