"""One evaluation of every rule (each scheduler runs it every ``ALERTS_EVALUATE_INTERVAL_S``).

Several schedulers may run (two hosts, a rolling deploy): each rule is
measured once per evaluation window (the interval, on Redis's clock) by
whichever scheduler claims that window first in Redis (``SET NX``), so a
sustained breach is sampled once a window and not once per scheduler. The
Alert rows' conditional writes then fire and resolve each alert once.

A rule that cannot be measured (Redis down, a query failing) is logged and
skipped: its open alerts stay as they are. Messages owed (fired, resolved)
are then posted once each, on each channel apart: Slack for every alert,
the pager for the rules that page. A webhook that fails after its bounded
tries is given back and tried again at the next evaluation, and the rest of
that channel's messages wait for it; the other channel goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dramatiq
from django.conf import settings

from jobs.core.clock import database_now
from jobs.models.alert import Alert, Channel, Notice
from jobs.ops.alerts.notifier import page_on_call, post_slack
from jobs.ops.alerts.rules import Rule, all_rules, get_rule

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    fired: list[Alert] = field(default_factory=list)
    skipped_rules: list[str] = field(default_factory=list)
    #: Rules another scheduler measures in this window.
    claimed_elsewhere: list[str] = field(default_factory=list)
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
            max_gap_s=max_sample_gap_s(),
        )
        if fired is not None:
            logger.warning("Alert fired: %s", fired)
            evaluation.fired.append(fired)
    Alert.observe_clear(rule.key, {breach.subject for breach in breaches}, now)


def max_sample_gap_s() -> float:
    """How long a pending breach may go unseen and still count as sustained.

    Evaluations come one window apart; with a second scheduler taking over
    from one that died after claiming a window, up to two. Longer than that,
    nobody was looking.
    """
    return 3 * settings.ALERTS_EVALUATE_INTERVAL_S


def claim_rule_window(rule: Rule) -> bool:
    """Take the right to measure ``rule`` in the current window (False: another scheduler has it).

    Redis unreachable: True. The rules that read only the database (failure
    rate, slow jobs) must still be measured; a window sampled twice at worst.
    """
    try:
        return _claim(rule)
    except Exception as exc:
        logger.warning("Could not claim the window of alert rule %s; measuring it anyway: %s", rule.key, exc)
        return True


def _claim(rule: Rule) -> bool:
    broker: Any = dramatiq.get_broker()
    interval = max(settings.ALERTS_EVALUATE_INTERVAL_S, 0.001)
    window = int(float(broker.clock.now()) // interval)
    key = f"{broker.namespace}:__alerts__:{rule.key}:{window}"
    # Kept past its window so that a scheduler whose clock reading lags a little still finds it.
    expire_ms = max(1000, int(interval * 3000))
    return bool(broker.client.set(key, "1", nx=True, px=expire_ms))


def _post(channel: str, alert: Alert, notice: str) -> None:
    if channel == Channel.SLACK:
        post_slack(format_notice(alert, notice))
    else:
        page_on_call({"event": notice, "rule": alert.rule, "subject": alert.subject, "summary": alert.summary})


def _paging_rules() -> list[str]:
    return [rule.key for rule in all_rules() if rule.pages]


def _send_channel(channel: str, evaluation: Evaluation) -> None:
    for notice in (Notice.FIRED, Notice.RESOLVED):
        owed = Alert.unsent(notice, settings.ALERT_NOTIFY_MAX_EVALUATIONS, channel)
        if channel == Channel.PAGER:
            owed = owed.filter(rule__in=_paging_rules())
        for alert in owed.order_by("since"):
            if not alert.claim_notice(notice, channel):
                continue
            try:
                _post(channel, alert, notice)
            except Exception as exc:  # a failed post must never break the evaluator
                alert.release_notice(notice, str(exc), channel)
                evaluation.unsent += 1
                logger.error("Could not post the %s %s message of %s: %s", channel, notice, alert, exc)
                return
            evaluation.sent += 1


def send_owed_notices(evaluation: Evaluation) -> None:
    """Each channel on its own: Slack answering 500 holds back no page, and the reverse.

    The pager goes first: a Slack that times out on every try must not delay waking someone up.
    """
    for channel in (Channel.PAGER, Channel.SLACK):
        try:
            _send_channel(channel, evaluation)
        except Exception:
            logger.exception("Sending %s messages failed; they are owed until the next evaluation", channel)


def evaluate_alerts(*, once_per_window: bool = False) -> Evaluation:
    """Measure every rule, open/fire/resolve alerts, post what is owed. Never raises for one rule.

    ``once_per_window`` (the schedulers' duty): only the rules this process
    claims for the current window; a call from a shell or a test measures all.
    """
    # The rules compare job timestamps, which carry the database's clock.
    now = database_now()
    evaluation = Evaluation()
    for rule in all_rules():
        try:
            if once_per_window and not claim_rule_window(rule):
                evaluation.claimed_elsewhere.append(rule.key)
                continue
            _evaluate_rule(rule, now, evaluation)
        except Exception:
            logger.exception("Alert rule %s could not be evaluated", rule.key)
            evaluation.skipped_rules.append(rule.key)
    send_owed_notices(evaluation)
    return evaluation


def evaluate_alerts_duty() -> Evaluation:
    """The schedulers' duty: each rule measured once per window, whichever scheduler gets there first."""
    return evaluate_alerts(once_per_window=True)
