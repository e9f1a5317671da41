"""Marketing sends a blast from the admin: create, choose the audience, launch, see counts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from campaigns.models import Audience, Campaign, CampaignStatus, EmailTemplate
from campaigns.services import audience_users, launch_campaign
from jobs.models import Job, JobStatus
from tests.campaigns.helpers import users
from tests.factories import EmailTemplateFactory, UserFactory


@pytest.fixture
def admin_client(db) -> Client:
    client = Client()
    superuser: Any = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(superuser)
    return client


def test_staff_create_a_group_campaign_and_launch_it_from_the_admin(admin_client):
    # Given a group of two users and a template
    group = Group.objects.create(name="newsletter")
    members = users(2)
    group.user_set.add(*members)
    template = EmailTemplateFactory()
    # When staff add a campaign for the group in the admin
    response = admin_client.post(
        "/admin/campaigns/campaign/add/",
        {"name": "November news", "template": template.pk, "audience": Audience.GROUP, "group": group.pk},
    )
    assert response.status_code == 302, response.content
    campaign = Campaign.objects.get(name="November news")
    assert campaign.status == CampaignStatus.DRAFT
    # And launch it with the admin action
    response = admin_client.post(
        "/admin/campaigns/campaign/",
        {"action": "launch_campaigns", "_selected_action": [campaign.pk]},
    )
    assert response.status_code == 302
    # Then its parent job is queued on email-sender and the campaign is on its way
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SCHEDULED
    job = Job.objects.get(id=campaign.job_id)
    assert (job.type, job.queue, job.status) == ("email-batch", "email-sender", JobStatus.QUEUED)


def test_campaign_list_shows_delivery_counts(admin_client):
    Campaign.objects.create(name="Done", template=EmailTemplateFactory(), total=5, sent=3, bounced=1, failed=1)
    page = admin_client.get("/admin/campaigns/campaign/").content.decode()
    assert "Done" in page and "100 %" in page


def test_campaign_launched_with_a_time_waits_until_then(db):
    [owner] = users(1)
    campaign = Campaign.objects.create(
        name="later",
        template=EmailTemplateFactory(),
        audience=Audience.ALL_ACTIVE,
        scheduled_at=timezone.now() + timedelta(days=30),
    )
    job = launch_campaign(campaign, owner)
    assert job.status == JobStatus.SCHEDULED and job.scheduled_for == campaign.scheduled_at


def test_all_active_audience_is_active_users_with_an_address(db):
    reachable = users(2)
    users(1, is_active=False)
    users(1, email="")
    campaign = Campaign.objects.create(name="all", template=EmailTemplateFactory(), audience=Audience.ALL_ACTIVE)
    assert set(audience_users(campaign)) == set(reachable)


def test_admin_rejects_a_template_that_does_not_render(admin_client):
    response = admin_client.post(
        "/admin/campaigns/emailtemplate/add/",
        {"name": "broken", "subject": "{% if %}", "body_text": "x", "body_html": ""},
    )
    assert response.status_code == 200
    assert "TemplateSyntaxError" in response.content.decode()


def test_admin_refuses_a_template_over_the_render_budget_on_its_field(admin_client):
    # Given a template of nested loops (10^8 iterations)
    nested = "{% for a in '0123456789'|make_list %}" * 8 + "{{ a }}" + "{% endfor %}" * 8
    # When staff save it in the admin
    response = admin_client.post(
        "/admin/campaigns/emailtemplate/add/", {"name": "heavy", "subject": "s", "body_text": nested, "body_html": ""}
    )
    # Then the form shows the budget's reason on the field, and nothing is stored
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["body_text"] == [
        "over the render budget: more than 10,000 loop iterations"
    ]
    assert not EmailTemplate.objects.exists()


def test_launched_campaign_page_shows_its_counts_and_links_read_only(admin_client):
    campaign = Campaign.objects.create(
        name="Sent one", template=EmailTemplateFactory(), status=CampaignStatus.COMPLETED, total=7, sent=6, failed=1
    )
    page = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "7 deliveries" in body and 'name="name"' not in body
    deliveries = admin_client.get(f"/admin/campaigns/delivery/?campaign__id__exact={campaign.pk}")
    assert deliveries.status_code == 200


def test_template_edits_in_the_admin_are_in_the_audit_trail(admin_client):
    from jobs.models import AuditEvent

    # When staff create a template, change it, then delete it in the admin
    created = admin_client.post(
        "/admin/campaigns/emailtemplate/add/",
        {"name": "welcome", "subject": "Hello {{ recipient.first_name }}", "body_text": "Hi", "body_html": ""},
    )
    assert created.status_code == 302, created.content[:500]
    template = EmailTemplate.objects.get(name="welcome")
    admin_client.post(
        f"/admin/campaigns/emailtemplate/{template.pk}/change/",
        {"name": "welcome", "subject": "Hi", "body_text": "Hi", "body_html": ""},
    )
    admin_client.post(f"/admin/campaigns/emailtemplate/{template.pk}/delete/", {"post": "yes"})

    # Then each is recorded, through the admin, against that template
    trail = list(AuditEvent.objects.order_by("at", "id").values_list("action", "via", "target_type", "target_id"))
    assert trail == [
        ("template-created", "admin", "email template", str(template.pk)),
        ("template-changed", "admin", "email template", str(template.pk)),
        ("template-deleted", "admin", "email template", str(template.pk)),
    ]
