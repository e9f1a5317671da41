from __future__ import annotations

import factory
from django.contrib.auth import get_user_model


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("secret-pass-123")
    is_active = True


class DocumentFactory(factory.django.DjangoModelFactory):
    """A stored document; pass ``file__data=<pdf bytes>`` for its content."""

    class Meta:
        model = "documents.Document"

    owner = factory.SubFactory(UserFactory)
    original_name = "scan.pdf"
    file = factory.django.FileField(filename="scan.pdf", data=b"%PDF-1.4\n")
    size = factory.LazyAttribute(lambda document: document.file.size)
    sha256 = "0" * 64
    page_count = 1


class EmailTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "campaigns.EmailTemplate"

    name = factory.Sequence(lambda n: f"template {n}")
    subject = "Hello {{ recipient.username }}"
    body_text = "Dear {{ recipient.username }}, news from {{ campaign.name }}."
    body_html = "<p>Dear {{ recipient.username }}</p>"


def api_token(user: object) -> str:
    """A new API token for ``user`` (knox: only its digest is stored), as a client sends it."""
    from jobs.web.credentials import issue_token

    return issue_token(user)[1]
