"""Fair-share weights: set in the admin, read by ``weight_of`` (own weight, else the best group's, else 1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from jobs.dispatch.fairness import forget_weights, weight_of
from jobs.models import ShareWeight
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/jobs/shareweight/add/"


@pytest.fixture(autouse=True)
def no_cached_weights() -> Iterator[None]:
    forget_weights()
    yield
    forget_weights()


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(cast(Any, UserFactory(is_staff=True, is_superuser=True)))
    return client


def _group_of(user: Any, name: str, weight: int | None = None) -> Group:
    group = Group.objects.create(name=name)
    user.groups.add(group)
    if weight is not None:
        ShareWeight.objects.create(group=group, weight=weight)
    return group


def test_staff_sets_a_users_weight_on_the_admin_add_page(admin_client, user, django_capture_on_commit_callbacks):
    # Given a user whose weight this process has already read (and cached)
    assert weight_of(user.pk) == 1
    # When staff give the user a weight in the admin
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(ADD_URL, {"user": user.pk, "group": "", "weight": 5, "note": "enterprise plan"})
    # Then it is saved, and read at once: saving dropped the cached weight
    assert response.status_code == 302, response.content.decode()
    assert ShareWeight.objects.get(user=user).note == "enterprise plan"
    assert weight_of(user.pk) == 5
    page = admin_client.get("/admin/jobs/shareweight/").content.decode()
    assert "enterprise plan" in page and user.username in page


def test_staff_sets_a_groups_weight_on_the_admin_add_page(admin_client, user, django_capture_on_commit_callbacks):
    group = _group_of(user, "enterprise")
    assert weight_of(user.pk) == 1
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(ADD_URL, {"user": "", "group": group.pk, "weight": 7, "note": ""})
    assert response.status_code == 302, response.content.decode()
    assert weight_of(user.pk) == 7


def test_deleting_a_weight_in_the_admin_takes_effect_at_once(admin_client, user, django_capture_on_commit_callbacks):
    row = ShareWeight.objects.create(user=user, weight=9)
    assert weight_of(user.pk) == 9
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/jobs/shareweight/{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert weight_of(user.pk) == 1


@pytest.mark.parametrize(
    ("with_user", "with_group", "message"),
    [(True, True, "not both"), (False, False, "Give a user or a group")],
)
def test_a_weight_for_both_or_neither_is_refused_on_the_form(admin_client, user, with_user, with_group, message):
    group = Group.objects.create(name="plan")
    response = admin_client.post(
        ADD_URL,
        {"user": user.pk if with_user else "", "group": group.pk if with_group else "", "weight": 3, "note": ""},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page
    assert "is violated" not in page
    assert not ShareWeight.objects.exists()


def test_the_user_page_shows_the_weight_inline(admin_client, user):
    ShareWeight.objects.create(user=user, weight=4, note="pilot customer")
    page = admin_client.get(f"/admin/auth/user/{user.pk}/change/").content.decode()
    assert "Fair-share weight" in page
    assert "pilot customer" in page


def test_a_users_own_weight_wins_over_their_groups(user):
    _group_of(user, "big", weight=9)
    ShareWeight.objects.create(user=user, weight=2)
    assert weight_of(user.pk) == 2


def test_without_an_own_weight_the_highest_group_weight_applies(user):
    _group_of(user, "small", weight=3)
    _group_of(user, "big", weight=8)
    _group_of(user, "unweighted")
    assert weight_of(user.pk) == 8


def test_without_any_weight_a_user_weighs_one(user, other_user):
    _group_of(user, "unweighted")
    ShareWeight.objects.create(user=other_user, weight=50)
    assert weight_of(user.pk) == 1
    assert weight_of(None) == 1
