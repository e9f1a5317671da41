"""The campaign API: templates, and starting an email-batch job."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import Campaign, CampaignStatus, Delivery, EmailTemplate
from campaigns.rendering import TemplateInvalid, compile_template
from jobs.models import Job, JobStatus
from tests.campaigns.helpers import users
from tests.factories import EmailTemplateFactory, UserFactory

TEMPLATE = {"name": "welcome", "subject": "Hi {{ recipient.username }}", "body_text": "Hello", "body_html": ""}


def test_staff_create_list_and_update_email_templates(staff_api):
    created = staff_api.post("/api/email-templates", TEMPLATE, format="json")
    assert created.status_code == 201, created.content
    template_id = created.json()["id"]
    listed = staff_api.get("/api/email-templates").json()
    assert [item["name"] for item in listed["results"]] == ["welcome"]
    updated = staff_api.patch(f"/api/email-templates/{template_id}", {"subject": "Bye"}, format="json")
    assert updated.status_code == 200
    assert EmailTemplate.objects.get(pk=template_id).subject == "Bye"


def test_template_that_does_not_compile_is_rejected_with_the_template_error(staff_api):
    response = staff_api.post("/api/email-templates", {**TEMPLATE, "body_text": "{% for x in %}"}, format="json")
    assert response.status_code == 400
    error = response.json()["errors"]["body_text"][0]
    assert "TemplateSyntaxError" in error
    assert not EmailTemplate.objects.exists()


def test_template_whose_filter_fails_when_rendered_is_rejected(staff_api):
    response = staff_api.post(
        "/api/email-templates",
        {**TEMPLATE, "subject": "{{ recipient.username|date:'Y'|divisibleby:0 }}"},
        format="json",
    )
    assert response.status_code == 400
    assert "subject" in response.json()["errors"]


@pytest.mark.parametrize(
    ("field", "source", "named"),
    [
        ("body_text", "{% debug %}", "{% debug %}"),
        ("body_html", "<p>{{ recipient.first_name|safe }}</p>", "|safe"),
        ("body_html", "{% autoescape off %}{{ recipient.first_name }}{% endautoescape %}", "{% autoescape off %}"),
        ("body_text", "{{ context.digest.jobs|dictsort:'0' }}", "|dictsort"),
        ("body_text", "{% url 'admin:index' %}", "{% url %}"),
        ("subject", "{{ campaign|pprint }}", "|pprint"),
        ("body_text", "{% load static %}{% static 'x' %}", "{% load %}"),
        ("body_text", "{% include 'admin/base.html' %}", "{% include %}"),
        ("body_html", "{{ 'x'|ljust:'2000000000' }}", "|ljust"),
        ("body_text", "{% lorem 99999999 w %}", "{% lorem %}"),
        ("body_text", "{% for x in '0123456789'|make_list %}" * 5 + "{% endfor %}" * 5, "loop iterations"),
    ],
)
def test_template_with_a_dangerous_tag_filter_or_field_is_rejected_by_name(staff_api, field, source, named):
    # Given a template that uses a construct that could dump data, turn off escaping or exhaust the budget
    # When staff save it
    response = staff_api.post("/api/email-templates", {**TEMPLATE, field: source}, format="json")
    # Then the API answers 400 naming the field and the construct, and nothing is stored
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert list(errors) == [field]
    assert named in errors[field][0]
    assert not EmailTemplate.objects.exists()


def test_safe_tags_and_filters_still_render(staff_api):
    # Given a template using ordinary tags and filters
    source = "{% if recipient.username %}{{ recipient.username|upper|truncatechars:20 }}{% endif %} {% now 'Y' %}"
    # When staff save it
    response = staff_api.post("/api/email-templates", {**TEMPLATE, "body_text": source}, format="json")
    # Then it is accepted
    assert response.status_code == 201, response.content


def test_template_stored_with_a_forbidden_tag_is_refused_again_when_a_batch_compiles_it():
    # Given the source of a template stored before the rule existed, using {% debug %}
    # When a batch compiles it (sending.send_batch fails its deliveries with this error)
    with pytest.raises(TemplateInvalid) as refused:
        compile_template("Hi", "{% debug %}", "")
    # Then it is refused, naming the field
    assert list(refused.value.errors) == ["body_text"]


def test_update_over_the_render_budget_is_refused_naming_the_field(db):
    # Given a template, and a member of staff with every permission
    template = EmailTemplateFactory()
    client = APIClient()
    client.force_authenticate(UserFactory(is_staff=True, is_superuser=True))
    nested = "{% for a in '0123456789'|make_list %}" * 8 + "{{ a }}" + "{% endfor %}" * 8
    # When they PUT nested loops (10^8 iterations) into its HTML body
    response = client.put(
        f"/api/email-templates/{template.pk}",
        {"name": template.name, "subject": "s", "body_text": "t", "body_html": nested},
        format="json",
    )
    # Then the API answers 400 naming the field, and the stored template is unchanged
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"body_html": ["over the render budget: more than 10,000 loop iterations"]}
    template.refresh_from_db()
    assert template.body_html == "<p>Dear {{ recipient.username }}</p>"


def test_update_that_breaks_a_template_is_rejected(staff_api):
    template = EmailTemplateFactory()
    response = staff_api.patch(f"/api/email-templates/{template.pk}", {"body_html": "{% endif %}"}, format="json")
    assert response.status_code == 400
    assert "body_html" in response.json()["errors"]


def test_templates_are_for_staff_only(user_api):
    assert user_api.get("/api/email-templates").status_code == 403
    assert user_api.post("/api/email-templates", TEMPLATE, format="json").status_code == 403


def test_email_batch_answers_202_with_the_campaigns_parent_job(staff_api):
    # Given three users, one of them inactive
    a, b = users(2)
    [inactive] = users(1, is_active=False)
    template = EmailTemplateFactory()
    # When staff post an email-batch
    response = staff_api.post(
        "/api/jobs/email-batch",
        {"user_ids": [a.pk, b.pk, inactive.pk], "template_id": template.pk},
        format="json",
    )
    # Then a campaign with one pending delivery per reachable user is linked to the queued job
    assert response.status_code == 202, response.content
    job = Job.objects.get(id=response.json()["job_id"])
    assert (job.type, job.queue, job.status) == ("email-batch", "email-sender", JobStatus.QUEUED)
    campaign = Campaign.objects.get(job=job)
    assert job.arguments == {"campaign_id": campaign.pk}
    assert campaign.total == 2 and campaign.status == CampaignStatus.SCHEDULED
    assert set(Delivery.objects.filter(campaign=campaign).values_list("user_id", flat=True)) == {a.pk, b.pk}


def test_email_batch_scheduled_beyond_a_week_waits_in_the_database(staff_api):
    [a] = users(1)
    when = timezone.now() + timedelta(days=10)
    response = staff_api.post(
        "/api/jobs/email-batch",
        {"user_ids": [a.pk], "template_id": EmailTemplateFactory().pk, "schedule_at": when.isoformat()},
        format="json",
    )
    assert response.status_code == 202
    job = Job.objects.get(id=response.json()["job_id"])
    assert job.status == JobStatus.SCHEDULED
    assert abs((job.scheduled_for - when).total_seconds()) < 1


def test_email_batch_with_an_unknown_template_is_404(staff_api):
    [a] = users(1)
    response = staff_api.post("/api/jobs/email-batch", {"user_ids": [a.pk], "template_id": 999}, format="json")
    assert response.status_code == 404
    assert not Campaign.objects.exists() and not Job.objects.exists()


def test_email_batch_to_nobody_reachable_names_the_field(staff_api):
    [inactive] = users(1, is_active=False)
    response = staff_api.post(
        "/api/jobs/email-batch",
        {"user_ids": [inactive.pk], "template_id": EmailTemplateFactory().pk},
        format="json",
    )
    assert response.status_code == 400
    assert "user_ids" in response.json()["errors"]


def test_email_batch_is_for_staff_only(user_api):
    response = user_api.post("/api/jobs/email-batch", {"user_ids": [1], "template_id": 1}, format="json")
    assert response.status_code == 403
