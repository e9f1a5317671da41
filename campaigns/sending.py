"""Sending one batch of deliveries over one reused SMTP connection, exactly once per recipient.

For each recipient: take a rate-limit permit, claim the row
(``pending → sending``, a conditional UPDATE naming this batch's job), hand
the message to the server, and write the outcome right away. So:

* a recipient already ``sent``/``bounced``/``failed`` is never sent again,
  whoever redelivers the batch;
* two batches holding the same recipient cannot both send it (only one
  claim succeeds);
* the one unavoidable window: the server accepted a message and the worker
  died before writing ``sent``. The row stays ``sending`` under the run's
  token ("<job id>:<attempt>"). The run that takes the job over sends
  everything else first, then waits for such rows: an earlier run that is
  still alive (it was frozen, or cut off from Redis) records them itself and
  stops; one whose worker no longer heartbeats is given up after
  ``EMAIL_IN_DOUBT_GRACE_S`` and its rows are sent again, so a crash costs at
  most one duplicate per connection (a batch has at most one message in
  flight). The rule is in ``campaigns.deliveries``. Rows left ``sending`` by a
  job that never comes back are marked ``failed`` ("outcome unknown") when
  the campaign closes, never sent twice;
* a run whose job was taken over claims nothing more (its claims are fenced
  by the job) and stops; the hand-over to the server and its record run in
  ``uninterrupted()``, so the watchdog never stops a run between them.

Outcomes per recipient: 2xx → sent; 5xx to RCPT → bounced; an invalid
address, a 5xx to DATA or a template that fails (or goes over its render
budget, ``campaigns.rendering``) → failed; 4xx → pending
again, tried later (the batch reschedules itself, without using a job
retry) until ``EMAIL_MAX_ATTEMPTS_PER_RECIPIENT``; a dropped connection →
reconnect and try that recipient again. The sender refused, authentication
failing or no server at all → ``SmtpUnavailable``: the job's own retries.

The batch loop is here; what it stands on has a module each: the SMTP
protocol (``campaigns.smtp``), rate-limit permits and connection slots
(``campaigns.ratelimit``), the delivery claims (``campaigns.deliveries``)
and the compiled templates (``campaigns.rendering``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from campaigns.deliveries import AsynchronousCommits, InDoubt, OutcomeWriter, pending_recipients, release
from campaigns.exceptions import CampaignNotFound, SendingDeferred, SmtpUnavailable
from campaigns.models import Campaign, CampaignStatus, DeliveryStatus
from campaigns.ratelimit import ConnectionLease, SendPermits
from campaigns.rendering import CompiledTemplate, RawComposer, TemplateInvalid, compiled_template, render_parts
from campaigns.smtp import ServerRefused, SmtpConnection, deliver, deliver_raw, django_message
from campaigns.template_context import email_context
from campaigns.template_sandbox import TemplateBudgetExceeded
from jobs.public import current_fence, fenced, progress, uninterrupted

logger = logging.getLogger(__name__)

ProgressReport = Callable[[dict[str, int], int, int], None]


@dataclass
class BatchOutcome:
    sent: int = 0
    bounced: int = 0
    failed: int = 0
    #: Recipients that answered 4xx and will be tried again.
    retry_later: int = 0
    #: Recipients skipped: already final, or held by another batch.
    skipped: int = 0
    #: Rows this job had left ``sending`` when it died, sent again.
    reclaimed: int = 0
    #: Recipients left ``pending`` because the campaign was cancelled meanwhile.
    not_sent: int = 0
    reconnects: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _ReportClock:
    """When this process last wrote a campaign's progress: a batch's closing report waits its turn.

    Every batch used to recount its campaign and write the parent job's row
    as it ended: five statements per 50 messages, all at the same moment as
    the other batches'. Now at most one per campaign per
    ``EMAIL_PROGRESS_INTERVAL_S`` in each process; the campaign's last word
    is its closing recount (``services.finish_campaign``).
    """

    def __init__(self) -> None:
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()

    def due(self, campaign_id: int, interval_s: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(campaign_id, -interval_s) < interval_s:
                return False
            if len(self._last) > 1000:  # campaigns long over
                self._last.clear()
            self._last[campaign_id] = now
            return True


_report_clock = _ReportClock()


class _CampaignCancelled(Exception):  # noqa: N818 - a signal within this module, not a failure
    """The campaign was cancelled while a take-over waited for the rows in doubt."""


def _fenced_counts(campaign: Campaign) -> dict[str, int]:
    """Recount the campaign and store its counts, only while the run holds its job (a stale run's are refused)."""
    with fenced():
        return campaign.refresh_counts()


def send_batch(
    campaign_id: int,
    delivery_ids: list[int],
    *,
    token: str,
    report: ProgressReport | None = None,
) -> BatchOutcome:
    """Send the batch's pending deliveries over one connection; see the module docstring.

    ``token`` names the claimant: in a worker the run's fencing token
    (``str(current_fence())``, "<job id>:<attempt>"), so that a run knows its
    own claims from those of an earlier run of the same job, which are in
    doubt (``campaigns.deliveries``). Outside a run, any name: rows it left
    ``sending`` are its own.
    """
    campaign = Campaign.objects.select_related("template").filter(id=campaign_id).first()
    if campaign is None:
        raise CampaignNotFound(f"campaign {campaign_id} does not exist")
    fence = current_fence()
    outcome = BatchOutcome()
    rows = pending_recipients(delivery_ids, token, job_id=fence.job_id if fence is not None else None)
    outcome.reclaimed = rows.reclaimed
    if outcome.reclaimed:
        logger.warning(
            "Batch %s was interrupted while sending: %d message(s) in doubt are sent again",
            token,
            outcome.reclaimed,
        )
    if rows.in_doubt:
        logger.warning(
            "Batch %s took over from an earlier run: %d message(s) it held are in doubt and sent last, if at all",
            token,
            len(rows.in_doubt),
        )
    todo = deque(rows.recipients)
    outcome.skipped = len(delivery_ids) - len(todo) - len(rows.in_doubt)
    if todo and campaign.status == CampaignStatus.CANCELLED:
        outcome.not_sent = len(todo)
        return outcome
    if not todo and not rows.in_doubt:
        return outcome
    template = campaign.template
    composer: RawComposer | None = None
    try:
        compiled: CompiledTemplate | None = compiled_template(template.subject, template.body_text, template.body_html)
        broken = ""
    except TemplateInvalid as exc:
        compiled, broken = None, f"template error: {exc}"
    try:
        composer = RawComposer(settings.DEFAULT_FROM_EMAIL)
    except ValueError:  # a sender that is not an address: Django's path reports it per recipient
        composer = None

    max_attempts = int(settings.EMAIL_MAX_ATTEMPTS_PER_RECIPIENT)
    permits = SendPermits()
    slot = ConnectionLease()
    slot.take()
    connection = SmtpConnection()
    outcomes = OutcomeWriter(token, fence)
    total = len(todo) + len(rows.in_doubt)
    # Reported every EMAIL_PROGRESS_INTERVAL_S while sending, and once after the last message
    # (below the loop); each report recounts the campaign and writes the parent's row.
    last_report = time.monotonic()
    progress_interval_s = float(settings.EMAIL_PROGRESS_INTERVAL_S)
    commits = AsynchronousCommits()
    in_doubt: InDoubt | None = None
    if fence is not None and (rows.in_doubt or fence.attempt > 1):
        # A later attempt also looks once at the end: a claim of the earlier run may land
        # just after the take-over (see ``_MARK_AND_CLAIM_FENCED``).

        def still_waiting(waiting: int) -> None:
            slot.renew()
            if Campaign.is_cancelled(campaign_id):
                raise _CampaignCancelled
            progress(100 * (total - waiting) / total, f"waiting for {waiting} message(s) in doubt", in_doubt=waiting)

        in_doubt = InDoubt(fence.job_id, token, delivery_ids, dict(rows.in_doubt), still_waiting)
    try:
        commits.begin()
        connection.open()
        while True:
            while todo:
                delivery = todo.popleft()
                if compiled is not None:
                    permits.take_one()
                # Claim, render, hand-over and record: the watchdog never stops the run in between (a stop
                # asked meanwhile is raised when the block ends, and the finally below writes the record).
                # Cut between the claim and the hand-over, a run would leave its row "sending" but unsent;
                # cut between the hand-over and the record, the email would have no trace.
                with uninterrupted():
                    if not outcomes.claim_after_last(delivery.pk):
                        outcome.skipped += 1
                        continue
                    attempts = delivery.attempts + 1
                    if compiled is None:
                        outcomes.record(delivery.pk, DeliveryStatus.FAILED, broken)
                        outcome.failed += 1
                        continue
                    tag = f"{campaign.pk}/{delivery.pk}"
                    smtp = connection.smtp if composer is not None else None
                    try:
                        context = email_context(
                            recipient=delivery.fields, campaign_name=campaign.name, stored=delivery.context
                        )
                        parts = render_parts(compiled, context)
                        message = django_message(parts, delivery.email, tag) if smtp is None else None
                    except TemplateBudgetExceeded as exc:
                        reason = f"template over its render budget: {exc}"
                        outcomes.record(delivery.pk, DeliveryStatus.FAILED, reason)
                        outcome.failed += 1
                        continue
                    except Exception as exc:
                        reason = f"template error: {type(exc).__name__}: {exc}"
                        outcomes.record(delivery.pk, DeliveryStatus.FAILED, reason)
                        outcome.failed += 1
                        continue
                    try:
                        if smtp is not None and composer is not None:
                            result = deliver_raw(smtp, composer, parts, delivery.email, tag)
                        else:
                            result = deliver(connection.backend, message or django_message(parts, delivery.email, tag))
                    except ServerRefused as exc:
                        release(delivery.pk, token, str(exc), refund_attempt=True)
                        raise SmtpUnavailable(str(exc)) from exc
                    except BaseException:
                        # Not handed over (or we cannot tell): give the row back before the error goes up.
                        release(delivery.pk, token, refund_attempt=True)
                        raise
                    if result.kind == "sent":
                        outcomes.record(delivery.pk, DeliveryStatus.SENT, result.response, sent_at=timezone.now())
                        outcome.sent += 1
                    elif result.kind in ("bounced", "failed"):
                        outcomes.record(delivery.pk, result.kind, result.response)
                        setattr(outcome, result.kind, getattr(outcome, result.kind) + 1)
                    elif attempts >= max_attempts:
                        reason = f"gave up after {attempts} attempts: {result.response}"
                        outcomes.record(delivery.pk, DeliveryStatus.FAILED, reason)
                        outcome.failed += 1
                    else:  # dropped, or temporary (4xx)
                        outcomes.record(delivery.pk, DeliveryStatus.PENDING, result.response)
                    if result.kind == "dropped" and attempts < max_attempts:
                        delivery.attempts = attempts
                        todo.appendleft(delivery)
                        connection.reopen()
                        outcome.reconnects += 1
                    elif result.kind not in ("sent", "bounced", "failed") and attempts < max_attempts:
                        outcome.retry_later += 1  # tried again when the batch runs again
                slot.renew()
                now = time.monotonic()
                if todo and now - last_report >= progress_interval_s:
                    last_report = now
                    outcomes.flush()
                    if Campaign.is_cancelled(campaign_id):  # the parent was cancelled: the rest stays unsent
                        outcome.not_sent = len(todo)
                        break
                    if report is not None:
                        report(_fenced_counts(campaign), total - len(todo), total)
            if todo or in_doubt is None:
                break
            # Everything else is sent: now the rows an earlier run of this job left in doubt.
            outcomes.flush()
            try:
                ids = in_doubt.next_to_send()
            except _CampaignCancelled:
                break
            if not ids:
                break
            todo.extend(pending_recipients(ids, token, job_id=fence.job_id if fence else None).recipients)
            outcome.reclaimed += len(ids)
    finally:
        try:
            outcomes.flush()
        finally:
            outcomes.close()
            connection.close()
            slot.release()
            commits.restore()
            if todo:  # stopped early (cancelled, an error): the campaign's counts say so at once
                _fenced_counts(campaign)
    if report is not None and _report_clock.due(campaign_id, progress_interval_s):
        report(_fenced_counts(campaign), total - len(todo), total)
    if outcome.retry_later:
        raise SendingDeferred(
            settings.EMAIL_TEMPORARY_RETRY_DELAY_S,
            f"{outcome.retry_later} recipient(s) answered 4xx; trying them again",
        )
    return outcome
