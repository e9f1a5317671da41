"""Posting to Slack incoming webhooks (and the on-call pager): bounded retries, never an exception."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)


class WebhookFailed(Exception):
    """Every try of one webhook post failed."""


def _post_once(url: str, payload: dict[str, Any]) -> None:
    # The operator's own webhook URL from the settings (SLACK_WEBHOOK_URL, PAGER_WEBHOOK_URL).
    request = urllib.request.Request(  # noqa: S310
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=settings.ALERT_WEBHOOK_TIMEOUT_S) as response:  # noqa: S310
        response.read()


def post_webhook(url: str, payload: dict[str, Any]) -> None:
    """POST ``payload`` as JSON, up to ``ALERT_WEBHOOK_ATTEMPTS`` tries; raises WebhookFailed after the last."""
    attempts = max(1, settings.ALERT_WEBHOOK_ATTEMPTS)
    last_error = ""
    for attempt in range(1, attempts + 1):
        try:
            _post_once(url, payload)
            return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = str(exc)
            logger.warning("Webhook post failed (try %d of %d): %s", attempt, attempts, last_error)
        if attempt < attempts:
            time.sleep(settings.ALERT_WEBHOOK_BACKOFF_S * attempt)
    raise WebhookFailed(last_error or "no answer")


def post_slack(text: str) -> None:
    """One Slack message (``mrkdwn`` text); nothing is posted when ``SLACK_WEBHOOK_URL`` is unset."""
    if not settings.SLACK_WEBHOOK_URL:
        logger.info("SLACK_WEBHOOK_URL unset; not posted: %s", text)
        return
    post_webhook(settings.SLACK_WEBHOOK_URL, {"text": text})


def page_on_call(payload: dict[str, Any]) -> None:
    """The on-call pager (``PAGER_WEBHOOK_URL``), for the rules that wake someone up."""
    if not settings.PAGER_WEBHOOK_URL:
        return
    post_webhook(settings.PAGER_WEBHOOK_URL, payload)
