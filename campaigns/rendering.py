"""Email templates as Django templates: compiled once per process (``compiled_template``), rendered per recipient.

Templates are staff-edited and rendered with real users in the context, so
they compile with their own engine (``email_engine``) that knows only the
safe tags and filters of ``campaigns.template_library``; a forbidden one is
refused by name, per field, when the template is saved (API and admin) and
again when a batch compiles it.

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
from django.template import Context, Engine, Template
from django.template.base import Lexer, TokenType

from campaigns.template_library import FORBIDDEN_FILTERS, FORBIDDEN_TAGS, LOADER_TAGS


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


class EmailTemplateEngine(Engine):
    """An engine whose only builtins are the safe tags and filters (``campaigns.template_library``)."""

    default_builtins = ["campaigns.template_library"]


@functools.cache
def email_engine() -> Engine:
    """The engine every email template compiles with: no ``{% load %}``, no files, no debug output."""
    return EmailTemplateEngine(libraries={}, loaders=[("django.template.loaders.locmem.Loader", {})])


_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_FILTER_NAME = re.compile(r"\|\s*(\w+)")
_PASSWORD = re.compile(r"\bpassword\b")


def forbidden_construct(source: str) -> str | None:
    """Why this template source may not be used in an email (a forbidden tag, filter or field), or None.

    The engine would refuse such tags and filters too, as unknown; this names them plainly.
    """
    for token in Lexer(source).tokenize():
        if token.token_type not in (TokenType.VAR, TokenType.BLOCK):
            continue
        code = _QUOTED.sub('""', token.contents)
        if token.token_type == TokenType.BLOCK:
            name = code.split()[0] if code.split() else ""
            if name in FORBIDDEN_TAGS or name in LOADER_TAGS:
                return f"the {{% {name} %}} tag is not allowed in email templates (line {token.lineno})"
        for name in _FILTER_NAME.findall(code):
            if name in FORBIDDEN_FILTERS:
                return f"the |{name} filter is not allowed in email templates (line {token.lineno})"
        if _PASSWORD.search(code):
            return f"password fields cannot be used in email templates (line {token.lineno})"
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
        try:
            refused = forbidden_construct(source)
            if refused:
                errors[field] = refused
                continue
            parts[field] = engine.from_string(source)
        except Exception as exc:  # TemplateSyntaxError
            errors[field] = f"{type(exc).__name__}: {exc}"
    if errors:
        raise TemplateInvalid(errors)
    return CompiledTemplate(parts["subject"], parts["body_text"], parts["body_html"])  # type: ignore[arg-type]


@functools.lru_cache(maxsize=32)
def compiled_template(subject: str, body_text: str, body_html: str) -> CompiledTemplate:
    """The compiled template, shared by the batches of a campaign that run in this process.

    Compiled templates are immutable and safe to render from several threads
    (each render has its own Context); the key is the sources, so an edited
    template compiles afresh.
    """
    return compile_template(subject, body_text, body_html)


def render_parts(compiled: CompiledTemplate, context: dict[str, Any]) -> tuple[str, str, str]:
    """Subject (one line), text body and HTML body; the HTML one alone is autoescaped."""
    subject = compiled.subject.render(Context(context, autoescape=False))
    text = compiled.body_text.render(Context(context, autoescape=False))
    html = compiled.body_html.render(Context(context)) if compiled.body_html is not None else ""
    # A header cannot hold a line break (Django refuses it as header injection).
    return " ".join(subject.split()), text, html


def check_template(subject: str, body_text: str, body_html: str, context: dict[str, Any]) -> None:
    """Compile and render once with a sample context; raises TemplateInvalid."""
    compiled = compile_template(subject, body_text, body_html)
    errors: dict[str, str] = {}
    for field, template in (
        ("subject", compiled.subject),
        ("body_text", compiled.body_text),
        ("body_html", compiled.body_html),
    ):
        if template is None:
            continue
        try:
            template.render(Context(context, autoescape=field == "body_html"))
        except Exception as exc:
            errors[field] = f"{type(exc).__name__}: {exc}"
    if errors:
        raise TemplateInvalid(errors)


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
        boundary = "=" * 15 + str(random.randrange(sys.maxsize)) + "=="
        marker = boundary.encode("ascii")
        if not any(marker in part for part in parts):
            return boundary
