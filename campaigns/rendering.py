"""Email templates as Django templates: compile once per batch, render per recipient."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template import Context, Engine, Template


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


def compile_template(subject: str, body_text: str, body_html: str = "") -> CompiledTemplate:
    """Compile the three parts; raises TemplateInvalid naming each field that fails."""
    engine = Engine.get_default()
    parts: dict[str, Template | None] = {}
    errors: dict[str, str] = {}
    for field, source in (("subject", subject), ("body_text", body_text), ("body_html", body_html)):
        if field == "body_html" and not source.strip():
            parts[field] = None
            continue
        try:
            parts[field] = engine.from_string(source)
        except Exception as exc:  # TemplateSyntaxError, and library import errors
            errors[field] = f"{type(exc).__name__}: {exc}"
    if errors:
        raise TemplateInvalid(errors)
    return CompiledTemplate(parts["subject"], parts["body_text"], parts["body_html"])  # type: ignore[arg-type]


def render_parts(compiled: CompiledTemplate, context: dict[str, Any]) -> tuple[str, str, str]:
    """Subject (one line), text body and HTML body; the HTML one alone is autoescaped."""
    subject = compiled.subject.render(Context(context, autoescape=False))
    text = compiled.body_text.render(Context(context, autoescape=False))
    html = compiled.body_html.render(Context(context)) if compiled.body_html is not None else ""
    # A header cannot hold a line break (Django refuses it as header injection).
    return " ".join(subject.split()), text, html


def build_message(
    compiled: CompiledTemplate, context: dict[str, Any], to: str, headers: dict[str, str]
) -> EmailMultiAlternatives:
    subject, text, html = render_parts(compiled, context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to], headers=headers)
    if html:
        message.attach_alternative(html, "text/html")
    return message


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
