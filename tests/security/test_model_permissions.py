"""Staff status alone opens no template or campaign API: each needs its model permission.

Template edits land in the audit trail. Against the real server (uvicorn).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from django.contrib.auth.models import Permission

from jobs.models import AuditEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "secret-pass-123"  # tests/factories.py
TEMPLATE = {"name": "welcome", "subject": "Hello", "body_text": "Welcome aboard."}


def _staff(*permissions: str) -> Any:
    user: Any = UserFactory(is_staff=True)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label=app_label))
    return user


def _headers(server: Any, user: Any) -> dict[str, str]:
    response = requests.post(
        f"{server.url}/api/auth/token", data={"username": user.username, "password": PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Token {response.json()['token']}"}


def test_staff_without_template_permissions_can_neither_read_nor_write_templates(web_server):
    headers = _headers(web_server, _staff())

    assert requests.get(f"{web_server.url}/api/email-templates", headers=headers, timeout=10).status_code == 403
    created = requests.post(f"{web_server.url}/api/email-templates", json=TEMPLATE, headers=headers, timeout=10)
    assert created.status_code == 403, created.text


def test_staff_who_may_view_templates_read_them_but_cannot_create_one(web_server):
    headers = _headers(web_server, _staff("campaigns.view_emailtemplate"))

    assert requests.get(f"{web_server.url}/api/email-templates", headers=headers, timeout=10).status_code == 200
    created = requests.post(f"{web_server.url}/api/email-templates", json=TEMPLATE, headers=headers, timeout=10)
    assert created.status_code == 403, created.text


def test_template_edits_by_staff_with_the_permissions_are_audited(web_server):
    editor = _staff("campaigns.view_emailtemplate", "campaigns.add_emailtemplate", "campaigns.change_emailtemplate")
    headers = _headers(web_server, editor)

    created = requests.post(f"{web_server.url}/api/email-templates", json=TEMPLATE, headers=headers, timeout=10)
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    changed = requests.patch(
        f"{web_server.url}/api/email-templates/{template_id}", json={"subject": "Hi"}, headers=headers, timeout=10
    )
    assert changed.status_code == 200, changed.text

    trail = list(AuditEvent.objects.order_by("at", "id").values_list("action", "via", "actor_label", "target_id"))
    assert trail == [
        ("template-created", "api", editor.username, str(template_id)),
        ("template-changed", "api", editor.username, str(template_id)),
    ]


def test_staff_without_the_campaign_permission_cannot_start_an_email_batch(web_server):
    headers = _headers(web_server, _staff())

    response = requests.post(
        f"{web_server.url}/api/jobs/email-batch", json={"user_ids": [1], "template_id": 1}, headers=headers, timeout=10
    )

    assert response.status_code == 403, response.text
    assert "campaigns.add_campaign" in response.text
