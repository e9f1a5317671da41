"""Fair-share weights in the admin: one row per user or group, also editable on the user's and group's page.

A change takes effect in this process at once and in every other web and
worker process within ``jobs.dispatch.fairness.WEIGHT_CACHE_S`` (each keeps
its own short cache of the weights it read).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs.dispatch.fairness import WEIGHT_CACHE_S, forget_weights
from jobs.models.share import ShareWeight


def _forget_after_commit() -> None:
    # After the commit: a request reading the weight before it would cache the old one again.
    transaction.on_commit(forget_weights)


class ShareWeightForm(forms.ModelForm):  # type: ignore[type-arg]
    """Exactly one of user and group: said on the form, before the database's check constraint would refuse it."""

    class Meta:
        model = ShareWeight
        fields = ["user", "group", "weight", "note"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        has_user = cleaned.get("user") is not None
        has_group = cleaned.get("group") is not None
        # Each error is attached to a field: the model's own check of the constraint then skips
        # it, instead of adding "Constraint ... is violated" under this sentence.
        if has_user and has_group:
            self.add_error("group", "Give either a user or a group, not both: make one row for each.")
        elif not has_user and not has_group and not self.has_error("user") and not self.has_error("group"):
            self.add_error("user", "Give a user or a group: the weight applies to one of them.")
        return cleaned


@admin.register(ShareWeight)
class ShareWeightAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = ShareWeightForm
    list_display = ["user", "group", "weight", "note"]
    list_display_links = ["user", "group"]
    list_select_related = ["user", "group"]
    list_editable = ["weight"]
    search_fields = ["user__username", "group__name", "note"]
    ordering = ["-weight", "user__username", "group__name"]
    autocomplete_fields = ["user", "group"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        form.base_fields["weight"].help_text = (
            "Jobs started for this owner per job of a weight-1 owner while both wait on a queue "
            f"(1 to 100). Takes effect everywhere within {WEIGHT_CACHE_S:.0f} s."
        )
        return form

    def save_model(self, request: HttpRequest, obj: ShareWeight, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        _forget_after_commit()

    def delete_model(self, request: HttpRequest, obj: ShareWeight) -> None:
        super().delete_model(request, obj)
        _forget_after_commit()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ShareWeight]) -> None:
        super().delete_queryset(request, queryset)
        _forget_after_commit()


class _ShareWeightInline(admin.StackedInline):  # type: ignore[type-arg]
    model = ShareWeight
    fields = ["weight", "note"]
    extra = 0
    max_num = 1
    verbose_name = "fair-share weight"


class UserShareWeightInline(_ShareWeightInline):
    fk_name = "user"


class GroupShareWeightInline(_ShareWeightInline):
    fk_name = "group"


class _ForgetsWeightsOnSave:
    """Saving the page (its weight inline included) drops the cached weights."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # type: ignore[misc]
        _forget_after_commit()


# Django's own user and group pages (the project keeps Django's User), with the weight inline.
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserWithShareWeightAdmin(_ForgetsWeightsOnSave, UserAdmin):  # type: ignore[type-arg]
    inlines = [*UserAdmin.inlines, UserShareWeightInline]


@admin.register(Group)
class GroupWithShareWeightAdmin(_ForgetsWeightsOnSave, GroupAdmin):
    inlines = [*GroupAdmin.inlines, GroupShareWeightInline]
