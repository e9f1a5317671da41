"""Email templates: plain data only, tags and filters by an allow-list, every render within a budget."""

from __future__ import annotations

from importlib import import_module
from typing import Any

import pytest
from django.apps import apps
from django.template import Context

from campaigns import digest
from campaigns.models import Delivery, EmailTemplate
from campaigns.rendering import (
    TemplateInvalid,
    check_template,
    compile_template,
    email_engine,
    forget_compiled_templates,
    render_parts,
)
from campaigns.sending import send_batch
from campaigns.template_context import email_context, recipient_fields, sample_context
from campaigns.template_library import ALLOWED_FILTERS, ALLOWED_TAGS
from campaigns.template_sandbox import TemplateBudgetExceeded
from tests.campaigns.helpers import campaign_for, delivery_ids, statuses, users
from tests.factories import EmailTemplateFactory

migration = import_module("campaigns.migrations.0005_templates_on_plain_data")

ADA = recipient_fields(first_name="Ada", last_name="Lovelace", email="ada@example.com", username="ada")
NESTED_LOOPS = "{% for a in '0123456789'|make_list %}" * 5 + "{{ a }}" + "{% endfor %}" * 5


def _render(body_text: str, context: dict[str, Any] | None = None) -> str:
    compiled = compile_template("s", body_text, "")
    return render_parts(compiled, context if context is not None else sample_context())[1]


@pytest.fixture(autouse=True)
def _fresh_template_cache() -> Any:
    """Settings change between tests: no compiled and checked template carries over."""
    forget_compiled_templates()
    yield
    forget_compiled_templates()


# -- the context ------------------------------------------------------------------------------


def test_every_variable_renders_from_plain_data(settings):
    # Given a delivery's context as sending builds it
    settings.SITE_NAME = "Acme Conveyor"
    context = email_context(recipient=ADA, campaign_name="Spring news", stored={"digest": {"headline": "2 job(s)"}})
    source = (
        "{{ recipient.first_name }}|{{ recipient.last_name }}|{{ recipient.full_name }}|{{ recipient.email }}|"
        "{{ recipient.username }}|{{ campaign.name }}|{{ site.name }}|[{{ unsubscribe_url }}]|"
        "{{ context.digest.headline }}"
    )
    # When a template names each variable
    rendered = _render(source, context)
    # Then each is there
    assert rendered == "Ada|Lovelace|Ada Lovelace|ada@example.com|ada|Spring news|Acme Conveyor|[]|2 job(s)"


def test_context_holds_only_plain_data():
    context = email_context(recipient=ADA, campaign_name="x", stored={"digest": {"jobs": {"completed": 1}}})

    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(key, str) and plain(item) for key, item in value.items())
        if isinstance(value, list):
            return all(plain(item) for item in value)
        return value is None or isinstance(value, str | int | float | bool)

    assert plain(context)


def test_a_model_instance_in_the_context_gives_nothing_away_and_no_method_runs(db):
    # Given a context that (by mistake) holds a model instance and a dict's mutating method's name
    [alice] = users(1)
    context = {**sample_context(), "user": alice}
    # When a template reaches for its attributes, its managers and a method
    rendered = _render(
        "[{{ user.password }}{{ user.username }}{{ user.pk }}{% for j in user.jobs.all %}x{% endfor %}"
        "{{ recipient.clear }}{{ context.digest.documents.popitem }}]",
        context,
    )
    # Then nothing is read or called: only dict keys and list indexes are looked up
    assert rendered == "[]"
    assert context["context"]["digest"]["documents"] == {"ready": 2, "failed": 1}


def test_dict_items_and_list_indexes_are_looked_up():
    stored = {"rows": ["a", "b"], "counts": {"x": 1}}
    context = email_context(recipient=ADA, campaign_name="c", stored=stored)
    source = "{{ context.rows.1 }}{% for k, v in context.counts.items %}{{ k }}={{ v }}{% endfor %}"
    assert _render(source, context) == "bx=1"


# -- tags and filters by an allow-list --------------------------------------------------------


def test_the_engine_knows_the_allowed_tags_and_filters_and_nothing_else():
    [library] = email_engine().template_builtins
    assert set(library.tags) == ALLOWED_TAGS
    assert set(library.filters) == ALLOWED_FILTERS


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("{% debug %}", "{% debug %}"),
        ("{% load i18n %}", "{% load %}"),
        ("{% include 'x.html' %}", "{% include %}"),
        ("{% extends 'x.html' %}", "{% extends %}"),
        ("{% url 'admin:index' %}", "{% url %}"),
        ("{% csrf_token %}", "{% csrf_token %}"),
        ("{% regroup context.rows by x as groups %}", "{% regroup %}"),
        ("{% autoescape off %}x{% endautoescape %}", "{% autoescape off %}"),
        ("{{ recipient|pprint }}", "|pprint"),
        ("{{ recipient.first_name|safe }}", "|safe"),
        ("{{ context.rows|dictsort:'x' }}", "|dictsort"),
        ("{{ context.rows|json_script:'x' }}", "|json_script"),
        ("{{ 'x'|rjust:'2000000000' }}", "|rjust"),
        ("{{ recipient.first_name|wordwrap:1 }}", "|wordwrap"),
        ('{{ "a\\"b"|add:recipient.email|urlize }}', "|urlize"),
    ],
)
def test_a_tag_or_filter_not_allowed_is_refused_by_name(source, named):
    with pytest.raises(TemplateInvalid) as refused:
        compile_template("s", source, "")
    assert named in refused.value.errors["body_text"]


def test_autoescape_on_is_allowed_and_the_html_part_escapes():
    compiled = compile_template("s", "t", "{% autoescape on %}<b>{{ recipient.first_name }}</b>{% endautoescape %}")
    context = email_context(recipient={**ADA, "first_name": "<i>Ada</i>"}, campaign_name="c", stored={})
    assert render_parts(compiled, context)[2] == "<b>&lt;i&gt;Ada&lt;/i&gt;</b>"


def test_everyday_tags_and_filters_render():
    source = (
        "{% with name=recipient.first_name|upper %}{{ name|truncatechars:2 }}{% endwith %} "
        "{% for k, n in context.digest.documents.items %}{{ n }} {{ k }}{% if not forloop.last %}, {% endif %}"
        "{% endfor %} {{ 3.14159|floatformat:2 }} {{ context.digest.jobs.completed|pluralize }} "
        "{% firstof recipient.nickname recipient.username %} {% cycle 'a' 'b' as c %}{{ c }} "
        "{{ context.digest.headline|length }}{% spaceless %} <b> x </b> {% endspaceless %}"
    )
    assert _render(source) == "A… 2 ready, 1 failed 3.14 s ada aa 23<b> x </b>"


# -- the budget ---------------------------------------------------------------------------------


def test_nested_loops_are_stopped_by_the_loop_budget_before_the_inner_loops_run(settings):
    settings.EMAIL_TEMPLATE_MAX_LOOP_ITERATIONS = 1000
    with pytest.raises(TemplateBudgetExceeded, match="more than 1,000 loop iterations"):
        _render(NESTED_LOOPS)


def test_output_over_the_budget_stops_the_render(settings):
    settings.EMAIL_TEMPLATE_MAX_OUTPUT_KB = 1
    with pytest.raises(TemplateBudgetExceeded, match="characters of output"):
        _render("{% for a in '0123456789'|make_list %}" + "x" * 200 + "{% endfor %}")


def test_a_string_doubled_by_filters_is_stopped_at_the_budget(settings):
    # Given a chain of {% with %} doubling a string each step (2^20 times its size, without a loop)
    settings.EMAIL_TEMPLATE_MAX_OUTPUT_KB = 64
    steps = 20
    source = "{% with v0='xxxxxxxxxxxxxxxx' %}"
    source += "".join(f"{{% with v{n + 1}=v{n}|add:v{n} %}}" for n in range(steps))
    source += f"{{{{ v{steps}|length }}}}" + "{% endwith %}" * (steps + 1)
    # When it renders, Then a filter's result over the output budget stops it
    with pytest.raises(TemplateBudgetExceeded, match="the |add filter would make a value"):
        _render(source)


def test_join_is_refused_before_it_builds_a_string_over_the_budget(settings):
    settings.EMAIL_TEMPLATE_MAX_OUTPUT_KB = 64
    separator = "y" * 1000
    with pytest.raises(TemplateBudgetExceeded, match="the |join filter would make"):
        _render("{{ '" + "x" * 1000 + "'|make_list|join:'" + separator + "' }}")


def test_floatformat_beyond_30_places_is_refused():
    with pytest.raises(TemplateBudgetExceeded, match="floatformat"):
        _render("{{ 1|floatformat:'100000000' }}")


def test_work_that_makes_no_output_is_stopped_at_the_deadline(settings):
    # Given loop and output budgets that would allow it, and a tight time budget
    settings.EMAIL_TEMPLATE_MAX_LOOP_ITERATIONS = 10**9
    settings.EMAIL_TEMPLATE_RENDER_TIMEOUT_S = 0.05
    # When a template loops 10^8 times over a condition, printing nothing
    source = "{% for a in '0123456789'|make_list %}" * 8 + "{% if a == 'z' %}x{% endif %}" + "{% endfor %}" * 8
    # Then the render itself stops at the deadline
    with pytest.raises(TemplateBudgetExceeded, match="rendering took longer than 0.05 s"):
        _render(source)


def test_the_three_parts_share_one_budget(settings):
    settings.EMAIL_TEMPLATE_MAX_LOOP_ITERATIONS = 15
    loop = "{% for a in '0123456789'|make_list %}{{ a }}{% endfor %}"
    compiled = compile_template(loop, loop, "")
    with pytest.raises(TemplateBudgetExceeded, match="more than 15 loop iterations"):
        render_parts(compiled, sample_context())


def test_a_template_renders_only_within_a_budget():
    compiled = compile_template("s", "{{ recipient.first_name }}", "")
    with pytest.raises(RuntimeError, match="within a budget"):
        compiled.body_text.render(Context(sample_context()))


def test_the_save_time_check_refuses_a_template_over_the_budget_naming_the_field():
    with pytest.raises(TemplateInvalid) as refused:
        check_template("s", "t", NESTED_LOOPS)
    assert list(refused.value.errors) == ["body_html"]
    assert "over the render budget: more than 10,000 loop iterations" in refused.value.errors["body_html"]


# -- at send time ----------------------------------------------------------------------------------


def test_a_stored_template_over_the_budget_fails_every_delivery_with_the_checks_reason(db, smtp):
    # Given a template stored before the budget existed (the same check as at save refuses it)
    template = EmailTemplate.objects.create(name="heavy", subject="s", body_text=NESTED_LOOPS)
    campaign = campaign_for(users(2), template)
    # When its batch runs
    outcome = send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    # Then no email went, and each delivery says why
    assert outcome.failed == 2 and smtp.received == []
    reasons = set(Delivery.objects.filter(campaign=campaign).values_list("smtp_response", flat=True))
    assert reasons == {"template error: body_html: over the render budget: more than 10,000 loop iterations"} or (
        reasons == {"template error: body_text: over the render budget: more than 10,000 loop iterations"}
    )


def test_a_delivery_whose_own_context_goes_over_the_budget_fails_alone(db, smtp, settings):
    # Given a loop budget of 5 and a template looping over each delivery's own rows
    settings.EMAIL_TEMPLATE_MAX_LOOP_ITERATIONS = 5
    small, big = users(2)
    template = EmailTemplateFactory(body_text="{% for row in context.rows %}{{ row }}{% endfor %}")
    campaign = campaign_for([small, big], template)
    Delivery.objects.filter(campaign=campaign, user=small).update(context={"rows": [1, 2]})
    Delivery.objects.filter(campaign=campaign, user=big).update(context={"rows": list(range(10))})
    # When the batch runs
    outcome = send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    # Then the small one is sent, and the big one failed with the budget's reason
    assert (outcome.sent, outcome.failed) == (1, 1)
    assert statuses(campaign) == {small.email: "sent", big.email: "failed"}
    assert Delivery.objects.get(campaign=campaign, user=big).smtp_response == (
        "template over its render budget: more than 5 loop iterations"
    )
    [received] = smtp.received
    assert received.body == "12"


def test_recipient_fields_come_from_the_user_and_the_deliverys_address(db, smtp):
    [grace] = users(1, first_name="Grace", last_name="Hopper", username="grace")
    template = EmailTemplateFactory(
        subject="Hi {{ recipient.first_name }}",
        body_text="{{ recipient.full_name }} <{{ recipient.email }}> {{ recipient.username }} / {{ campaign.name }}",
    )
    campaign = campaign_for([grace], template)
    send_batch(campaign.pk, delivery_ids(campaign), token="t1")
    [received] = smtp.received
    assert received.subject == "Hi Grace"
    assert received.body == f"Grace Hopper <{grace.email}> grace / test campaign"


# -- the data migration ----------------------------------------------------------------------------

#: The daily digest's default template before this change (campaigns/digest.py).
OLD_DIGEST_SUBJECT = "Your day on Conveyor: {{ digest.headline }}"
OLD_DIGEST_TEXT = (
    "Hello {{ user.get_short_name|default:user.get_username }},\n\n"
    "In the last day:\n"
    "{% if digest.documents %}- documents: {% for status, n in digest.documents.items %}"
    "{{ n }} {{ status }}{% if not forloop.last %}, {% endif %}{% endfor %}\n{% endif %}"
    "{% if digest.jobs %}- jobs: {% for status, n in digest.jobs.items %}"
    "{{ n }} {{ status }}{% if not forloop.last %}, {% endif %}{% endfor %}\n{% endif %}"
    "\n-- Conveyor\n"
)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("{{ user.username }}", "{{ recipient.username }}"),
        ("{{ user }}", "{{ recipient.username }}"),
        ("{{ user.get_full_name }}", "{{ recipient.full_name }}"),
        (
            "{{ user.get_short_name|default:user.get_username }}",
            "{{ recipient.first_name|default:recipient.username }}",
        ),
        (
            "{% if user.first_name %}{{ user.last_name }}{% endif %}",
            "{% if recipient.first_name %}{{ recipient.last_name }}{% endif %}",
        ),
        ("{{ user.email|lower }}", "{{ recipient.email|lower }}"),
        ("{{ campaign }} {{ campaign.name }}", "{{ campaign.name }} {{ campaign.name }}"),
        ("{{ digest.headline }}", "{{ context.digest.headline }}"),
        # Unchanged: text outside tags, quoted strings, comments, and attributes with no plain counterpart
        ("Dear user, {# user.username #}", "Dear user, {# user.username #}"),
        ("{{ 'user.username'|add:user.username }}", "{{ 'user.username'|add:recipient.username }}"),
        ("{{ user.pk }} {{ campaign.owner }} {{ users.0 }}", "{{ user.pk }} {{ campaign.owner }} {{ users.0 }}"),
    ],
)
def test_migration_renames_the_old_variables(old, new):
    assert migration.rewrite_source(old) == new


def test_every_stored_template_renders_after_the_migration(db, smtp):
    # Given templates stored with the old names: the digest's default, and what staff wrote
    EmailTemplate.objects.create(
        name=digest.DIGEST_TEMPLATE_NAME, subject=OLD_DIGEST_SUBJECT, body_text=OLD_DIGEST_TEXT
    )
    EmailTemplate.objects.create(
        name="welcome",
        subject="Welcome, {{ user.get_short_name|default:user }}",
        body_text="Dear {{ user.get_full_name }} ({{ user.email }}), news from {{ campaign.name }}.",
        body_html="<p>Dear {{ user.username }}</p>",
    )
    # When the data migration runs
    migration.rewrite_templates(apps, None)
    # Then the digest's template is the new default
    stored_digest = EmailTemplate.objects.get(name=digest.DIGEST_TEMPLATE_NAME)
    assert (stored_digest.subject, stored_digest.body_text) == (digest.DIGEST_SUBJECT, digest.DIGEST_TEXT)
    # And every stored template passes the check and renders the recipient's names
    context = email_context(
        recipient=ADA, campaign_name="Spring", stored={"digest": {"headline": "1 job(s)", "jobs": {"completed": 1}}}
    )
    rendered = {}
    for template in EmailTemplate.objects.all():
        compiled = check_template(template.subject, template.body_text, template.body_html)
        rendered[template.name] = render_parts(compiled, context)
    assert rendered[digest.DIGEST_TEMPLATE_NAME] == (
        "Your day on Conveyor: 1 job(s)",
        "Hello Ada,\n\nIn the last day:\n- jobs: 1 completed\n\n-- Conveyor\n",
        "",
    )
    assert rendered["welcome"] == (
        "Welcome, Ada",
        "Dear Ada Lovelace (ada@example.com), news from Spring.",
        "<p>Dear ada</p>",
    )
