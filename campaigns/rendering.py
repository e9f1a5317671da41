"""Email templates as Django templates: compiled and checked once per process, rendered per recipient.

Templates are staff-edited, so they compile with their own engine
(``template_sandbox.EmailTemplateEngine``): the allowed tags and filters of
``campaigns.template_library`` only, variables looked up in plain data only
(``campaigns.template_context`` says which), and every render within a
``RenderBudget`` (loop iterations, output size, time; ``EMAIL_TEMPLATE_*``
settings) that stops it in its own thread. A template is checked, by
``check_template``, against the same sample context when it is saved (API
and admin: a 400 naming the field) and, once per process, before a batch
sends it (``compiled_template``: its deliveries fail with the reason).

The rendered parts become a message through ``RawComposer`` (the wire bytes
directly, for the SMTP path; ``campaigns.smtp`` builds a Django message for
other backends and for what the composer leaves to Django). Django's ``message().as_bytes()``
rebuilds and refolds every header through the ``email`` package's generator
for each recipient, which cost more CPU than the SMTP exchange itself; the
composer writes the same MIME structure (headers, ``multipart/alternative``
with a text and an HTML part, utf-8, 7bit/8bit) from strings, and hands
anything unusual (another charset, lines over 998 octets) back to Django.
"""

from __future__ import annotations

import functools
import random
import re
import sys
from dataclasses import dataclass
from email.header import Header
from email.utils import formatdate, make_msgid
from typing import Any

from django.conf import settings
from django.core.mail.message import BadHeaderError, sanitize_address
from django.core.mail.utils import DNS_NAME
from django.template import Context, Template
from django.template.base import Lexer, TokenType

from campaigns.template_context import sample_context
from campaigns.template_library import ALLOWED_FILTERS, ALLOWED_TAGS, INNER_TAGS
from campaigns.template_sandbox import (
    EmailTemplateEngine,
    RenderBudget,
    TemplateBudgetExceeded,
    enter_budget,
    leave_budget,
    within_budget,
)

#: The longest source of one part (subject, text or HTML body) that compiles.
MAX_SOURCE_CHARS = 200_000


@dataclass(frozen=True)
class CompiledTemplate:
    subject: Template
    body_text: Template
    body_html: Template | None


class TemplateInvalid(ValueError):
    """A template that does not compile or render; ``errors`` names the fields."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in errors.items()))
        self.errors = errors


@functools.cache
def email_engine() -> EmailTemplateEngine:
    """The engine every email template compiles with: no ``{% load %}``, no files, no debug output."""
    return EmailTemplateEngine()


#: A quoted string as Django's lexer reads one (a backslash escapes the next character).
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_FILTER_NAME = re.compile(r"\|\s*(\w+)")


def forbidden_construct(source: str) -> str | None:
    """Why this template source may not be used in an email (a tag or filter not allowed), or None.

    The engine would refuse such tags and filters too, as unknown; this names them plainly.
    """
    for token in Lexer(source).tokenize():
        if token.token_type not in (TokenType.VAR, TokenType.BLOCK):
            continue
        code = _QUOTED.sub('""', token.contents)
        if token.token_type == TokenType.BLOCK:
            words = code.split()
            name = words[0] if words else ""
            if name == "autoescape" and words[1:] == ["off"]:
                return f"{{% autoescape off %}} is not allowed in email templates (line {token.lineno})"
            if name not in ALLOWED_TAGS and name not in INNER_TAGS:
                return f"the {{% {name} %}} tag is not allowed in email templates (line {token.lineno})"
        for name in _FILTER_NAME.findall(code):
            if name not in ALLOWED_FILTERS:
                return f"the |{name} filter is not allowed in email templates (line {token.lineno})"
    return None


def compile_template(subject: str, body_text: str, body_html: str = "") -> CompiledTemplate:
    """Compile the three parts with the email engine; raises TemplateInvalid naming each field that fails."""
    engine = email_engine()
    parts: dict[str, Template | None] = {}
    errors: dict[str, str] = {}
    for field, source in (("subject", subject), ("body_text", body_text), ("body_html", body_html)):
        if field == "body_html" and not source.strip():
            parts[field] = None
            continue
        if len(source) > MAX_SOURCE_CHARS:
            errors[field] = f"longer than {MAX_SOURCE_CHARS:,} characters"
            continue
        try:
            refused = forbidden_construct(source)
            if refused:
                errors[field] = refused
                continue
            parts[field] = engine.from_string(source)
        except Exception as exc:  # TemplateSyntaxError, RecursionError (nesting too deep)
            errors[field] = f"{type(exc).__name__}: {exc}"
    if errors:
        raise TemplateInvalid(errors)
    return CompiledTemplate(parts["subject"], parts["body_text"], parts["body_html"])  # type: ignore[arg-type]


def render_budget() -> RenderBudget:
    """A new budget for one render of a template's three parts (the ``EMAIL_TEMPLATE_*`` settings)."""
    return RenderBudget(
        max_loops=settings.EMAIL_TEMPLATE_MAX_LOOP_ITERATIONS,
        max_output_chars=settings.EMAIL_TEMPLATE_MAX_OUTPUT_KB * 1024,
        timeout_s=settings.EMAIL_TEMPLATE_RENDER_TIMEOUT_S,
    )


def _parts(compiled: CompiledTemplate) -> list[tuple[str, Template]]:
    fields = (("subject", compiled.subject), ("body_text", compiled.body_text), ("body_html", compiled.body_html))
    return [(field, template) for field, template in fields if template is not None]


def render_parts(compiled: CompiledTemplate, context: dict[str, Any]) -> tuple[str, str, str]:
    """Subject (one line), text body and HTML body; the HTML one alone is autoescaped.

    ``context`` is plain data (``template_context.email_context``). The three
    parts share one budget; over it, ``TemplateBudgetExceeded`` is raised
    from inside the render, which stops there.
    """
    token = enter_budget(render_budget())
    try:
        subject = compiled.subject.render(Context(context, autoescape=False))
        text = compiled.body_text.render(Context(context, autoescape=False))
        html = compiled.body_html.render(Context(context)) if compiled.body_html is not None else ""
    finally:
        leave_budget(token)
    # A header cannot hold a line break (Django refuses it as header injection).
    return " ".join(subject.split()), text, html


def check_template(subject: str, body_text: str, body_html: str) -> CompiledTemplate:
    """Compile, and render once with the sample context within the budget; raises TemplateInvalid.

    The check at save time and the one before sending are this function: the same context, the same budget.
    """
    compiled = compile_template(subject, body_text, body_html)
    context = sample_context()
    with within_budget(render_budget()):
        for field, template in _parts(compiled):
            try:
                template.render(Context(context, autoescape=field == "body_html"))
            except TemplateBudgetExceeded as exc:
                raise TemplateInvalid({field: f"over the render budget: {exc}"}) from exc
            except Exception as exc:
                raise TemplateInvalid({field: f"{type(exc).__name__}: {exc}"}) from exc
    return compiled


@functools.lru_cache(maxsize=32)
def _checked_template(subject: str, body_text: str, body_html: str) -> CompiledTemplate | dict[str, str]:
    try:
        return check_template(subject, body_text, body_html)
    except TemplateInvalid as exc:
        return exc.errors


def compiled_template(subject: str, body_text: str, body_html: str) -> CompiledTemplate:
    """The compiled and checked template, shared by the batches of a campaign that run in this process.

    Compiled templates are immutable and safe to render from several threads
    (each render has its own Context and budget); the key is the sources, so
    an edited template compiles afresh. A template that fails the check
    raises TemplateInvalid, remembered like a good one (a template over the
    time budget costs its time once per process, not once per batch).
    """
    checked = _checked_template(subject, body_text, body_html)
    if isinstance(checked, dict):
        raise TemplateInvalid(checked)
    return checked


def forget_compiled_templates() -> None:
    """Compile and check every template afresh (the budget settings changed: tests)."""
    _checked_template.cache_clear()


#: RFC 5322's limit on a line, in octets (without CRLF); Django quoted-printables longer ones.
_LINE_LIMIT = 998
_NEWLINES = re.compile(r"\r\n|\r|\n")
#: An address that ``sanitize_address`` returns unchanged: a dot-atom local part at a lower-case
#: ASCII host name (its IDNA form is itself). Anything else goes through ``sanitize_address``.
PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
#: Longest subject written as is; Django folds longer ones (``Header.encode``), and so do we.
_SHORT_SUBJECT = 60


def _header_value(name: str, value: str) -> str:
    """A header's value as Django writes it: no line breaks; non-ASCII as RFC 2047 encoded words."""
    if "\n" in value or "\r" in value:
        raise BadHeaderError(f"Header values can't contain newlines (got {value!r} for header {name!r})")
    if value.isascii():
        if name.lower() != "subject" or len(value) <= _SHORT_SUBJECT:
            return value
        return Header(value, header_name=name).encode(linesep="\r\n")
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


class RawComposer:
    """A batch's messages as wire bytes: the constant headers worked out once, the rest per recipient."""

    def __init__(self, from_email: str, extra_headers: dict[str, str] | None = None) -> None:
        encoding = settings.DEFAULT_CHARSET
        #: Only utf-8 is written here; ``compose`` returns None for anything else (Django builds it).
        self.usable = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        self.encoding = encoding
        self.sender = sanitize_address(from_email, encoding)
        from_header = from_email if from_email.isascii() else self.sender
        self._from = f"From: {_header_value('From', from_header)}\r\n"
        self._extra = "".join(
            f"{name}: {_header_value(name, value)}\r\n" for name, value in (extra_headers or {}).items()
        )
        self._domain = str(DNS_NAME)
        self._localtime = bool(settings.EMAIL_USE_LOCALTIME)

    def recipient(self, address: str) -> str:
        """The envelope address (idna, encoded display name); ValueError when it is not an address."""
        if PLAIN_ADDRESS.fullmatch(address):  # the common case; parsing it would change nothing
            return address
        return sanitize_address(address, self.encoding)

    def compose(
        self, subject: str, text: str, html: str, to: str, recipient: str, headers: dict[str, str]
    ) -> bytes | None:
        """The message's bytes with CRLF line ends, or None when Django must build it."""
        if not self.usable:
            return None
        text_part = _body(text)
        html_part = _body(html) if html else None
        if text_part is None or (html and html_part is None):
            return None
        head = [
            "",  # the Content-Type line, below
            "MIME-Version: 1.0\r\n",
            f"Subject: {_header_value('Subject', subject)}\r\n",
            self._from,
            f"To: {_header_value('To', to if to.isascii() else recipient)}\r\n",
            f"Date: {formatdate(localtime=self._localtime)}\r\n",
            f"Message-ID: {make_msgid(domain=self._domain)}\r\n",
            self._extra,
            *(f"{name}: {_header_value(name, value)}\r\n" for name, value in headers.items()),
            "\r\n",
        ]
        if html_part is None:
            cte, body = text_part
            head[0] = f'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n'
            return "".join(head).encode("ascii") + body
        boundary = _boundary(text_part[1], html_part[1])
        head[0] = f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
        delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
        return b"".join(
            (
                "".join(head).encode("ascii"),
                delimiter[2:],
                _part_head("plain", text_part[0]),
                text_part[1],
                delimiter,
                _part_head("html", html_part[0]),
                html_part[1],
                f"\r\n--{boundary}--\r\n".encode("ascii"),
            )
        )


def _body(text: str) -> tuple[str, bytes] | None:
    """A text part's transfer encoding and bytes; None when a line is too long for 7bit/8bit."""
    data = _NEWLINES.sub("\r\n", text).encode("utf-8", errors="surrogateescape")
    if len(data) > _LINE_LIMIT and any(len(line) > _LINE_LIMIT for line in data.split(b"\r\n")):
        return None
    return ("7bit" if data.isascii() else "8bit"), data


def _part_head(subtype: str, cte: str) -> bytes:
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
        f"Content-Transfer-Encoding: {cte}\r\n\r\n"
    ).encode("ascii")


def _boundary(*parts: bytes) -> str:
    """A multipart boundary that no part contains (the ``email`` package's form)."""
    while True:
        # Only has to differ from the parts' text, as the email package's own does: not a secret.
        boundary = "=" * 15 + str(random.randrange(sys.maxsize)) + "=="  # noqa: S311
        marker = boundary.encode("ascii")
        if not any(marker in part for part in parts):
            return boundary
