"""Measurements that domain apps provide to the alert rules and the weekly report.

``jobs`` never imports a domain app, so an app that knows something the
platform cannot measure registers a function here from its ``apps.py``::

    register_rule_input(EMAIL_SENT_PER_MINUTE, emails_sent_per_minute)

A rule whose input nobody registered is not evaluated.
"""

from __future__ import annotations

from collections.abc import Callable

#: Emails sent in the last minute while a campaign is sending; None when none is.
EMAIL_SENT_PER_MINUTE = "email_sent_per_minute"

_inputs: dict[str, Callable[[], float | None]] = {}


def register_rule_input(name: str, measure: Callable[[], float | None]) -> None:
    _inputs[name] = measure


def rule_input(name: str) -> Callable[[], float | None] | None:
    return _inputs.get(name)
