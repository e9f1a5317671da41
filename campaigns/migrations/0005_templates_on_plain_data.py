"""Stored email templates move to the plain-data names (``campaigns.template_context``).

Templates used to render against model instances: ``user`` (the recipient),
``campaign``, and the keys of a delivery's stored context at the top level
(the daily digest's ``digest``). Now they see plain data only, so each
stored subject and body is rewritten, inside ``{{ }}`` and ``{% %}`` and
outside quoted strings:

* ``user.first_name``, ``.last_name``, ``.email``, ``.username`` ->
  ``recipient.<same>``; ``user.get_full_name`` -> ``recipient.full_name``;
  ``user.get_short_name`` -> ``recipient.first_name`` (what Django's method
  returns); ``user.get_username`` and ``user`` alone -> ``recipient.username``;
* ``campaign`` alone -> ``campaign.name`` (``campaign.name`` is unchanged);
* ``digest`` -> ``context.digest`` (the digest's default template included).

Any other attribute (``user.pk``, ``campaign.owner``, ...) has no plain
counterpart and is left as written: it renders as nothing. There is no way
back: the reverse migration leaves the templates as they are.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import migrations
from django.template.base import tag_re

#: A quoted string as Django's lexer reads one (a backslash escapes the next character).
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_OLD_NAME = re.compile(r"(?<![\w.])(user|campaign|digest)\b(?:\.(\w+))?")
_RECIPIENT = {
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "username": "username",
    "get_full_name": "full_name",
    "get_short_name": "first_name",
    "get_username": "username",
}


def _new_name(match: re.Match[str]) -> str:
    root, attribute = match.group(1), match.group(2)
    if root == "user":
        if attribute is None:
            return "recipient.username"
        return f"recipient.{_RECIPIENT[attribute]}" if attribute in _RECIPIENT else match.group(0)
    if root == "campaign":
        return "campaign.name" if attribute is None else match.group(0)
    return "context." + match.group(0)  # digest


def _rename(code: str) -> str:
    """The names in one tag's code, quoted strings left alone."""
    pieces, position = [], 0
    for quoted in _QUOTED.finditer(code):
        pieces.append(_OLD_NAME.sub(_new_name, code[position : quoted.start()]))
        pieces.append(quoted.group(0))
        position = quoted.end()
    pieces.append(_OLD_NAME.sub(_new_name, code[position:]))
    return "".join(pieces)


def rewrite_source(source: str) -> str:
    """A template's source with the old names replaced; text outside tags and comments unchanged."""

    def tag(match: re.Match[str]) -> str:
        text = match.group(0)
        return text if text.startswith("{#") else _rename(text)

    return tag_re.sub(tag, source)


def rewrite_templates(apps: Any, schema_editor: Any) -> None:
    EmailTemplate = apps.get_model("campaigns", "EmailTemplate")
    for template in EmailTemplate.objects.all():
        changed = {
            field: rewrite_source(getattr(template, field))
            for field in ("subject", "body_text", "body_html")
            if rewrite_source(getattr(template, field)) != getattr(template, field)
        }
        if changed:
            EmailTemplate.objects.filter(pk=template.pk).update(**changed)


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0004_daily_digest_schedule")]

    operations = [migrations.RunPython(rewrite_templates, migrations.RunPython.noop)]
