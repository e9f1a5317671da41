"""Security: staff-authored email templates render against plain data, within a budget (issue #16, point 1).

Against the real server (uvicorn), real ``email-sender`` workers and a real
SMTP server (aiosmtpd): staff save each template of the issue through the
API, as the attacker did, and send it to users whose secrets it tries to reach.
Each attack is either refused when the template is saved (400 naming the
field) or harmless when it is sent.
"""

from __future__ import annotations

import time
from typing import Any

import psutil
import pytest
import requests
from django.utils import timezone

from campaigns.models import Campaign, Delivery, DeliveryStatus, EmailTemplate
from jobs.models import Job, JobStatus
from tests.campaigns.conftest import smtp, smtp_env, smtp_server  # noqa: F401 - the SMTP sink's fixtures
from tests.campaigns.helpers import users
from tests.factories import EmailTemplateFactory, UserFactory
from tests.jobs.helpers import start, wait_status
from tests.web_server import WebServer
from tests.workers import wait_for

pytestmark = pytest.mark.slow

PASSWORD = "secret-pass-123"  # noqa: S105 - the test users' password (tests/factories.py)
FAST = {"EMAIL_RATE_LIMIT_PER_MINUTE": "1000000"}

#: The issue's first template: every recipient's API token, guarded so that the old save-time check passed.
TOKEN_LEAK = (
    "{% if campaign.pk %}{% for d in campaign.deliveries.all %}{{ d.user.auth_token.key }} {% endfor %}{% endif %}"
)
#: The issue's second: a password hash through a filter argument, past the old quoted-string check.
PASSWORD_HASH = '{{ "a\\"b"|add:user.password|add:"c" }}'
#: The issue's third: a method that writes, called on each of the author's jobs.
CANCEL_JOBS = "{% for j in user.jobs.all %}{{ j.request_cancel }}{% endfor %}"
#: A method that writes and that today's models still have: recount each of the author's campaigns.
RECOUNT_CAMPAIGNS = "{% for c in user.owned_campaigns.all %}{{ c.refresh_counts }}{% endfor %}"
#: Eight nested loops of ten: 10^8 iterations.
NESTED_LOOPS = (
    "".join(f"{{% for {name} in '0123456789'|make_list %}}" for name in "abcdefgh") + "{{ a }}" + "{% endfor %}" * 8
)


def _signed_in(server: WebServer, username: str) -> requests.Session:
    """A session carrying the API token that ``POST /api/auth/token`` hands out."""
    session = requests.Session()
    session.headers["Authorization"] = f"Token {_token(server, username)}"
    return session


def _token(server: WebServer, username: str) -> str:
    response = requests.post(
        f"{server.url}/api/auth/token", json={"username": username, "password": PASSWORD}, timeout=30
    )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def _save_template(session: requests.Session, server: WebServer, **fields: str) -> requests.Response:
    body = {"name": f"attack {time.monotonic_ns()}", "subject": "News", "body_text": "Hello", "body_html": ""}
    return session.post(f"{server.url}/api/email-templates", json={**body, **fields}, timeout=30)


def _send(
    session: requests.Session, server: WebServer, template_id: int, recipients: list[Any], pools: Any, env: Any
) -> Job:
    """Start a worker pool and an email-batch of the template to the recipients, through the API; wait for its end."""
    pools("email-sender", env={**env, **FAST})
    response = session.post(
        f"{server.url}/api/jobs/email-batch",
        json={"template_id": template_id, "user_ids": [user.pk for user in recipients]},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    job = Job.objects.get(id=response.json()["job_id"])
    return wait_status(job, JobStatus.COMPLETED, JobStatus.FAILED, timeout=60)


def _refused(response: requests.Response, field: str) -> bool:
    """True when the template was refused at save, naming the field; False when it was stored."""
    if response.status_code == 400:
        assert field in response.json()["errors"], response.text
        return True
    assert response.status_code == 201, response.text
    return False


def _server_cpu_s(server: WebServer) -> float:
    """CPU time used so far by the web server's processes (uvicorn and any child)."""
    assert server.proc is not None
    root = psutil.Process(server.proc.pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        times = process.cpu_times()
        total += times.user + times.system
    return total


@pytest.fixture
def author() -> Any:
    """The member of staff who writes the templates (a superuser: every model permission)."""
    return UserFactory(is_staff=True, is_superuser=True)


def test_template_does_not_mail_every_recipients_api_token(web_server, pools, smtp, smtp_env, author):  # noqa: F811
    # Given two recipients with API tokens
    alice, bob = users(2)
    tokens = [_token(web_server, user.username) for user in (alice, bob)]
    staff = _signed_in(web_server, author.username)
    # When staff save the template and send it to both
    response = _save_template(staff, web_server, body_text=TOKEN_LEAK)
    if _refused(response, "body_text"):
        return
    job = _send(staff, web_server, response.json()["id"], [alice, bob], pools, smtp_env)
    # Then both got their email, and no email holds anyone's token
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert sorted(smtp.addresses()) == sorted([alice.email, bob.email])
    for received in smtp.received:
        assert not any(token in received.body or token in received.subject for token in tokens), received.body


def test_filter_argument_does_not_mail_a_password_hash(web_server, pools, smtp, smtp_env, author):  # noqa: F811
    # Given a recipient
    [alice] = users(1)
    staff = _signed_in(web_server, author.username)
    # When staff save the template with the password in a filter argument, and send it
    response = _save_template(staff, web_server, body_text=PASSWORD_HASH)
    if _refused(response, "body_text"):
        return
    _send(staff, web_server, response.json()["id"], [alice], pools, smtp_env)
    # Then no email holds a password hash
    hashes = [user.password for user in (alice, author)]
    assert smtp.received
    for received in smtp.received:
        assert "pbkdf2_sha256$" not in received.body
        assert not any(hashed in received.body for hashed in hashes)


def test_template_does_not_cancel_the_authors_active_job(web_server, pools, smtp, smtp_env, author):  # noqa: F811
    # Given an active job of the author's and one of the recipient's
    [alice] = users(1)
    jobs = [
        Job.objects.create(type="canary", queue="maintenance", actor="canary", owner=owner, status=JobStatus.ACTIVE)
        for owner in (author, alice)
    ]
    staff = _signed_in(web_server, author.username)
    # When staff save the issue's template that calls request_cancel on each of "user"'s jobs, and send it
    response = _save_template(staff, web_server, body_text=CANCEL_JOBS)
    if not _refused(response, "body_text"):
        _send(staff, web_server, response.json()["id"], [alice], pools, smtp_env)
    # Then neither job was asked to cancel
    for job in jobs:
        job.refresh_from_db()
        assert (job.status, job.cancel_requested_at) == (JobStatus.ACTIVE, None)


def test_template_does_not_call_a_method_that_writes(web_server, pools, smtp, smtp_env, author):  # noqa: F811
    # Given campaigns of the author's and the recipient's whose stored counts are not their rows' counts
    [alice] = users(1)
    template: Any = EmailTemplateFactory()
    campaigns = [
        Campaign.objects.create(name=f"old {owner.username}", template=template, owner=owner, total=7, sent=7)
        for owner in (author, alice)
    ]
    staff = _signed_in(web_server, author.username)
    # When staff save a template that calls refresh_counts (it writes the counts) on "user"'s campaigns, and send it
    response = _save_template(staff, web_server, body_text=RECOUNT_CAMPAIGNS)
    if not _refused(response, "body_text"):
        _send(staff, web_server, response.json()["id"], [alice], pools, smtp_env)
    # Then no campaign's row was written
    for campaign in campaigns:
        campaign.refresh_from_db()
        assert (campaign.total, campaign.sent) == (7, 7)


def test_nested_loops_are_refused_at_save_within_2_s_and_leave_the_server_idle(web_server, author):
    # Given staff signed in to the real server
    staff = _signed_in(web_server, author.username)
    # When they save a template of eight nested loops (10^8 iterations)
    started = time.monotonic()
    try:
        response = _save_template(staff, web_server, body_html=NESTED_LOOPS)
    except requests.Timeout:
        pytest.fail("the template was still being checked after 30 s")
    elapsed = time.monotonic() - started
    # Then the answer is a 400 naming the field, within 2 s
    assert response.status_code == 400, response.text
    assert "body_html" in response.json()["errors"]
    assert elapsed < 2.0, f"answered after {elapsed:.1f} s"
    # And no thread keeps rendering: over the next second the server uses almost no CPU
    before = _server_cpu_s(web_server)
    time.sleep(1.0)
    assert _server_cpu_s(web_server) - before < 0.3
    assert not EmailTemplate.objects.exists()


def test_template_over_budget_at_send_fails_its_delivery_and_the_worker_goes_on(pools, smtp, smtp_env, author):  # noqa: F811
    # Given a template of nested loops stored before the budget existed, and one worker process
    [alice] = users(1)
    heavy = EmailTemplate.objects.create(name="stored earlier", subject="News", body_text=NESTED_LOOPS)
    pool = pools("email-sender", env={**smtp_env, **FAST})
    workers = {process.pid for process in pool.worker_processes()}
    # When a campaign sends it
    start("email-batch", author, user_ids=[alice.pk], template_id=heavy.pk)
    # Then the delivery fails with a reason that names the template's problem
    delivery = wait_for(
        lambda: Delivery.objects.filter(campaign__template=heavy, status=DeliveryStatus.FAILED).first(),
        timeout=30,
        what="the delivery of the over-budget template to fail",
    )
    assert "template" in delivery.smtp_response, delivery.smtp_response
    assert not smtp.received
    # And the same worker process sends the next campaign
    sent_at = timezone.now()
    parent = start("email-batch", author, user_ids=[alice.pk], template_id=EmailTemplateFactory().pk)
    wait_status(parent, JobStatus.COMPLETED, timeout=30)
    assert smtp.addresses() == [alice.email]
    assert Delivery.objects.get(campaign__job=parent).sent_at >= sent_at
    assert {process.pid for process in pool.worker_processes()} == workers
