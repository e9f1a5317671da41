"""Marketing's screens: templates, campaigns (create, schedule, launch, counts), deliveries."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from campaigns.exceptions import CampaignNotLaunchable
from campaigns.models import Audience, Campaign, CampaignStatus, Delivery, DeliveryStatus, EmailTemplate
from campaigns.rendering import TemplateInvalid, check_template
from campaigns.services import launch_campaign
from jobs.public import AuditAction, Origin, Via, record_audit

STATUS_COLOURS: dict[str, str] = {
    CampaignStatus.DRAFT: "#6c757d",
    CampaignStatus.SCHEDULED: "#6f42c1",
    CampaignStatus.SENDING: "#0d6efd",
    CampaignStatus.COMPLETED: "#198754",
    CampaignStatus.CANCELLED: "#495057",
    DeliveryStatus.PENDING: "#6c757d",
    DeliveryStatus.SENT: "#198754",
    DeliveryStatus.BOUNCED: "#fd7e14",
    # Also CampaignStatus.FAILED: the same value, the same red.
    DeliveryStatus.FAILED: "#dc3545",
}


def badge(status: str, label: str) -> str:
    return format_html(
        '<span style="color:#fff;background:{};padding:2px 6px;border-radius:3px">{}</span>',
        STATUS_COLOURS.get(status, "#6c757d"),
        label,
    )


class EmailTemplateForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = EmailTemplate
        fields = ["name", "subject", "body_text", "body_html"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            # The same check, and sample context, as the API's and sending's.
            check_template(data.get("subject", ""), data.get("body_text", ""), data.get("body_html", "") or "")
        except TemplateInvalid as exc:
            for field, problem in exc.errors.items():
                self.add_error(field, problem)
        return data


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = EmailTemplateForm
    list_display = ["name", "subject", "updated_at"]
    search_fields = ["name", "subject"]

    # Every template edit is in the audit trail: a template is mailed to everyone.
    def save_model(self, request: HttpRequest, obj: EmailTemplate, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        action = AuditAction.TEMPLATE_CHANGED if change else AuditAction.TEMPLATE_CREATED
        record_audit(action, Origin.of_user(request.user, Via.ADMIN), "email template", obj.pk, {"name": obj.name})

    def delete_model(self, request: HttpRequest, obj: EmailTemplate) -> None:
        pk, name = obj.pk, obj.name
        super().delete_model(request, obj)
        record_audit(
            AuditAction.TEMPLATE_DELETED, Origin.of_user(request.user, Via.ADMIN), "email template", pk, {"name": name}
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[EmailTemplate]) -> None:
        deleted = list(queryset.values_list("pk", "name"))
        super().delete_queryset(request, queryset)
        origin = Origin.of_user(request.user, Via.ADMIN)
        for pk, name in deleted:
            record_audit(AuditAction.TEMPLATE_DELETED, origin, "email template", pk, {"name": name})


class CampaignForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Campaign
        fields = ["name", "template", "audience", "group", "selected_users", "scheduled_at"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        audience = data.get("audience")
        if audience == Audience.GROUP and not data.get("group"):
            self.add_error("group", "Choose the group to email.")
        if audience == Audience.SELECTED and not data.get("selected_users"):
            self.add_error("selected_users", "Choose the users to email.")
        return data


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = CampaignForm
    list_display = [
        "name",
        "status_badge",
        "template",
        "audience",
        "scheduled_at",
        "total",
        "sent",
        "bounced",
        "failed",
        "progress",
        "created_at",
    ]
    list_filter = ["status", "audience", "created_at"]
    search_fields = ["name", "template__name"]
    list_select_related = ["template"]
    autocomplete_fields = ["selected_users"]
    actions = ["launch_campaigns"]
    counts: list[Any] = ["status", "total", "sent", "bounced", "failed", "deliveries_link", "job_link"]
    readonly_fields = [*counts, "owner", "key", "created_at", "started_at", "finished_at"]
    fieldsets = [
        (None, {"fields": ["name", "template"]}),
        ("Audience", {"fields": ["audience", "group", "selected_users"]}),
        ("When", {"fields": ["scheduled_at"], "description": "Empty: sent as soon as it is launched."}),
        ("Delivery", {"fields": counts}),
        ("History", {"fields": ["owner", "key", "created_at", "started_at", "finished_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.status != CampaignStatus.DRAFT:
            # A launched campaign is a record: only its counts move.
            return [
                *self.readonly_fields,
                "name",
                "template",
                "audience",
                "group",
                "selected_users",
                "scheduled_at",
            ]
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        if not change:
            obj.owner = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only drafts can go, and only for staff the permissions allow to delete campaigns.
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.status == CampaignStatus.DRAFT)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Campaign) -> str:
        return badge(obj.status, obj.get_status_display())

    @admin.display(description="done")
    def progress(self, obj: Campaign) -> str:
        if not obj.total:
            return "-"
        done = obj.sent + obj.bounced + obj.failed
        return f"{100 * done // obj.total} %"

    @admin.display(description="deliveries")
    def deliveries_link(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:campaigns_delivery_changelist") + f"?campaign__id__exact={obj.pk}"
        return format_html('<a href="{}">{} deliveries</a>', url, obj.total)

    @admin.display(description="job")
    def job_link(self, obj: Campaign) -> str:
        if obj.job_id is None:
            return "-"
        url = reverse("admin:jobs_job_change", args=[obj.job_id])
        return format_html('<a href="{}">{}</a>', url, obj.job_id)

    @admin.action(description="Launch (now, or at the scheduled time)")
    def launch_campaigns(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        launched = 0
        for campaign in queryset.filter(status=CampaignStatus.DRAFT):
            try:
                launch_campaign(campaign, request.user)
                launched += 1
            except CampaignNotLaunchable as exc:
                self.message_user(request, str(exc), messages.WARNING)
        skipped = queryset.exclude(status=CampaignStatus.DRAFT).count()
        self.message_user(request, f"Launched {launched} campaign(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} campaign(s) were not drafts and were left alone.", messages.WARNING)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["email", "campaign", "status_badge", "attempts", "smtp_response", "sent_at"]
    list_filter = ["status", "campaign"]
    search_fields = ["email", "smtp_response"]
    list_select_related = ["campaign"]
    readonly_fields = [
        "campaign",
        "user",
        "email",
        "status",
        "smtp_response",
        "attempts",
        "claimed_by",
        "context",
        "sent_at",
        "updated_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Delivery) -> str:
        return badge(obj.status, obj.get_status_display())
