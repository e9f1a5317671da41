"""``manage.py ensure_admin``: ADMIN_PASSWORD goes through the password validators."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("weak", ["12345678", "password", "short1"])
def test_a_weak_admin_password_stops_the_command_with_the_reason(monkeypatch, weak):
    # Given ADMIN_PASSWORD that Django's validators refuse (all digits, common, too short)
    monkeypatch.setenv("ADMIN_USERNAME", "operator")
    monkeypatch.setenv("ADMIN_PASSWORD", weak)

    # When the command runs, Then it stops naming the variable, and no account is created
    with pytest.raises(CommandError, match="ADMIN_PASSWORD is too weak: This password is"):
        call_command("ensure_admin")
    assert not get_user_model().objects.filter(username="operator").exists()


def test_a_strong_admin_password_creates_the_account(monkeypatch):
    monkeypatch.setenv("ADMIN_USERNAME", "operator")
    monkeypatch.setenv("ADMIN_PASSWORD", "rusty-anchor-harbour-42")

    call_command("ensure_admin")

    assert get_user_model().objects.get(username="operator").check_password("rusty-anchor-harbour-42")
