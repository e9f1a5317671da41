"""Errors of the campaigns app; permanent ones are not retried."""

from __future__ import annotations

from jobs.public import PermanentJobError, Reschedule, TransientJobError


class CampaignNotFound(PermanentJobError):
    """The campaign a job names no longer exists."""


class CampaignNotLaunchable(Exception):
    """Launch asked for a campaign that is not a draft."""


class SmtpUnavailable(TransientJobError):
    """The SMTP server cannot be reached or refuses the sender: the whole batch is retried."""


class SendingDeferred(Reschedule):
    """The rate limit or the connection slots say "not now": the batch runs again later."""
