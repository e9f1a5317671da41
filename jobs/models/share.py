"""Fair-share weights: how much of a queue a user (or everyone in a group) gets while others wait."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

#: A weight above this would let one owner starve everyone else for long stretches.
MAX_WEIGHT = 100


class ShareWeight(models.Model):
    """A fair-share weight for one user or one group (exactly one of the two).

    While several owners have jobs waiting on a queue, each is served in
    proportion to its weight (``jobs.worker.broker``): an owner of weight 3
    gets three jobs started for every one of an owner of weight 1. A user's
    own weight wins; otherwise the highest weight among the user's groups
    applies; otherwise 1.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="share_weight"
    )
    group = models.OneToOneField(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="share_weight"
    )
    weight = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_WEIGHT)]
    )
    note = models.CharField(max_length=200, blank=True, default="", help_text="Why, e.g. 'enterprise plan'.")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(group__isnull=True))
                | (Q(user__isnull=True) & Q(group__isnull=False)),
                name="share_weight_user_xor_group",
            ),
            models.CheckConstraint(
                condition=Q(weight__gte=1) & Q(weight__lte=MAX_WEIGHT), name="share_weight_in_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.group}: weight {self.weight}"
