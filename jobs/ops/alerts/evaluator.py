"""One evaluation of every rule (the scheduler runs it every ``ALERTS_EVALUATE_INTERVAL_S``).

A rule that cannot be measured (Redis down, a query failing) is logged and
skipped: its open alerts stay as they are. Messages owed (fired, resolved)
are then posted once each; a webhook that fails after its bounded tries is
given back and tried again at the next evaluation, and the rest of this
evaluation's messages wait for that one too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings

from jobs.core.clock import database_now
from jobs.models.alert import Alert, Notice
from jobs.ops.alerts.notifier import WebhookFailed, page_on_call, post_slack
from jobs.ops.alerts.rules import Rule, all_rules, get_rule

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    fired: list[Alert] = field(default_factory=list)
    skipped_rules: list[str] = field(default_factory=list)
    sent: int = 0
    unsent: int = 0


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "?"


def format_notice(alert: Alert, notice: str) -> str:
    rule = get_rule(alert.rule)
    if notice == Notice.FIRED:
        return f":rotating_light: *{rule.title}* firing since {_when(alert.since)}: {alert.summary}"
    lasted = ""
    if alert.fired_at and alert.resolved_at:
        lasted = f" after {round((alert.resolved_at - alert.since).total_seconds() / 60)} min"
    where = f" ({alert.subject})" if alert.subject else ""
    return (
        f":white_check_mark: *{rule.title}*{where} resolved at {_when(alert.resolved_at)}{lasted}: was {alert.summary}"
    )


def _evaluate_rule(rule: Rule, now: datetime, evaluation: Evaluation) -> None:
    breaches = rule.measure(rule, now)
    if breaches is None:
        evaluation.skipped_rules.append(rule.key)
        return
    for breach in breaches:
        fired = Alert.observe_breach(
            rule.key,
            breach.subject,
            value=breach.value,
            threshold=rule.threshold,
            summary=breach.summary,
            for_s=rule.for_s,
            now=now,
        )
        if fired is not None:
            logger.warning("Alert fired: %s", fired)
            evaluation.fired.append(fired)
    Alert.observe_clear(rule.key, {breach.subject for breach in breaches}, now)


def _send(alert: Alert, notice: str) -> None:
    post_slack(format_notice(alert, notice))
    if get_rule(alert.rule).pages:
        try:
            page_on_call({"event": notice, "rule": alert.rule, "subject": alert.subject, "summary": alert.summary})
        except WebhookFailed:
            # Slack has it already: posting it again for the pager's sake would repeat it.
            logger.error("The pager webhook failed for %s; Slack was told", alert)


def send_owed_notices(evaluation: Evaluation) -> None:
    for notice in (Notice.FIRED, Notice.RESOLVED):
        for alert in Alert.unsent(notice, settings.ALERT_NOTIFY_MAX_EVALUATIONS).order_by("since"):
            if not alert.claim_notice(notice):
                continue
            try:
                _send(alert, notice)
            except Exception as exc:  # a failed post must never break the evaluator
                alert.release_notice(notice, str(exc))
                evaluation.unsent += 1
                logger.error("Could not post the %s message of %s: %s", notice, alert, exc)
                return
            evaluation.sent += 1


def evaluate_alerts() -> Evaluation:
    """Measure every rule, open/fire/resolve alerts, post what is owed. Never raises for one rule."""
    # The rules compare job timestamps, which carry the database's clock.
    now = database_now()
    evaluation = Evaluation()
    for rule in all_rules():
        try:
            _evaluate_rule(rule, now, evaluation)
        except Exception:
            logger.exception("Alert rule %s could not be evaluated", rule.key)
            evaluation.skipped_rules.append(rule.key)
    try:
        send_owed_notices(evaluation)
    except Exception:
        logger.exception("Sending alert messages failed; they are owed until the next evaluation")
    return evaluation
