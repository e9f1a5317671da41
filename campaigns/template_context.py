"""What an email template can name: plain data only, the same shape when it is checked and when it is sent.

The variables::

    recipient.first_name  recipient.last_name  recipient.full_name
    recipient.email       recipient.username
    campaign.name
    site.name             (settings.SITE_NAME)
    unsubscribe_url       ("" : Conveyor has no unsubscribe page yet)
    context.<key>         the delivery's own stored context; the daily digest's is
                          context.digest.headline, context.digest.documents and
                          context.digest.jobs (status -> count)

Every value is a str, a number, a bool, None, a list or a dict of those; no
model instance ever reaches a template (``template_sandbox.PlainVariable``
would not read one anyway). A name that is not there renders as nothing.

``sample_context`` is what a template is checked against, when it is saved
(API and admin) and again, once per process, before a batch sends it: the
same function builds both contexts, so the check sees what sending shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

RECIPIENT_FIELDS = ("first_name", "last_name", "full_name", "email", "username")


def recipient_fields(*, first_name: str, last_name: str, email: str, username: str) -> dict[str, str]:
    """A recipient's display fields, as ``recipient.*`` shows them."""
    return {
        "first_name": first_name,
        "last_name": last_name,
        "full_name": f"{first_name} {last_name}".strip(),
        "email": email,
        "username": username,
    }


def plain_data(value: Any) -> Any:
    """A copy of JSON-like data (dicts with string keys, lists, str, numbers, bools, None); TypeError otherwise."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(key): plain_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(item) for item in value]
    raise TypeError(f"{type(value).__name__} is not plain data")


def email_context(*, recipient: Mapping[str, str], campaign_name: str, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The whole context of one email; ``stored`` is the delivery's own (``Delivery.context``)."""
    return {
        "recipient": {field: str(recipient.get(field, "")) for field in RECIPIENT_FIELDS},
        "campaign": {"name": campaign_name},
        "site": {"name": settings.SITE_NAME},
        "unsubscribe_url": "",
        "context": plain_data(stored),
    }


#: A digest delivery's stored context, as ``campaigns.digest`` writes it: the sample exercises its loops.
SAMPLE_STORED_CONTEXT: dict[str, Any] = {
    "digest": {
        "documents": {"ready": 2, "failed": 1},
        "jobs": {"completed": 3},
        "headline": "3 document(s), 3 job(s)",
    }
}


def sample_context() -> dict[str, Any]:
    """The context every template is checked against, at save and before sending."""
    return email_context(
        recipient=recipient_fields(first_name="Ada", last_name="Lovelace", email="ada@example.com", username="ada"),
        campaign_name="Preview",
        stored=SAMPLE_STORED_CONTEXT,
    )
