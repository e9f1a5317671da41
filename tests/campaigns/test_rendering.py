"""The wire bytes the SMTP path composes read back as the message Django would have built."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage as StdlibMessage

import pytest
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import sanitize_address

from campaigns.rendering import RawComposer

FROM = "Conveyor <conveyor@example.com>"


def _parse(raw: bytes) -> StdlibMessage:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, StdlibMessage)
    return parsed


def _django(subject: str, text: str, html: str, to: str) -> StdlibMessage:
    message = EmailMultiAlternatives(subject, text, FROM, [to], headers={"X-Conveyor-Delivery": "1/2"})
    if html:
        message.attach_alternative(html, "text/html")
    return _parse(message.message().as_bytes(linesep="\r\n"))


def _bodies(message: StdlibMessage) -> list[tuple[str, str]]:
    parts = message.iter_parts() if message.is_multipart() else [message]
    return [(part.get_content_type(), part.get_content()) for part in parts]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("subject", "text", "html"),
    [
        ("Hello alice", "Dear alice,\nnews.\n", "<p>Dear alice</p>"),
        ("Grüße, Zoë ✓", "Liebe Zoë,\r\nbis bald.\rEnde", "<p>Zoë &amp; co</p>\n"),
        (" ".join(["A subject long enough to be folded by the header encoder"] * 3), "text", ""),
        (" ".join(["Ünïcode subject that is rather long, to be folded in encoded words"] * 2), "no html", ""),
        ("Dots", ".\n..leading dots\n.", "<p>\n.\n</p>"),
    ],
)
def test_composed_message_reads_back_as_djangos(subject, text, html, settings):
    # Given the parts rendered for one recipient (render_parts puts the subject on one line)
    composer = RawComposer(FROM)
    to = "alice@example.com"
    # When the composer writes the message
    raw = composer.compose(subject, text, html, to, composer.recipient(to), {"X-Conveyor-Delivery": "1/2"})
    # Then a mail reader sees what it would see in Django's message
    assert raw is not None and b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    ours, theirs = _parse(raw), _django(subject, text, html, to)
    for header in ("Subject", "From", "To", "X-Conveyor-Delivery", "MIME-Version"):
        # (Django's refolding of a long encoded subject reads back with a leading space.)
        assert str(ours[header]).strip() == str(theirs[header]).strip(), header
    assert ours.get_content_type() == theirs.get_content_type()
    assert _bodies(ours) == _bodies(theirs)
    assert ours["Date"] and ours["Message-ID"]
    assert not ours.defects and all(not part.defects for part in ours.walk())


def test_line_over_998_octets_is_left_to_django():
    composer = RawComposer(FROM)
    long_line = "x" * 1200
    assert composer.compose("s", long_line, "", "a@example.com", "a@example.com", {}) is None
    assert composer.compose("s", "short", long_line, "a@example.com", "a@example.com", {}) is None


def test_another_charset_is_left_to_django(settings):
    settings.DEFAULT_CHARSET = "iso-8859-1"
    composer = RawComposer(FROM)
    assert composer.compose("s", "t", "", "a@example.com", "a@example.com", {}) is None


@pytest.mark.parametrize(
    "address",
    ["alice@example.com", "a.b+tag@mail.example.co.uk", "Bob@Example.COM", "zoë@exämple.com", "x@localhost"],
)
def test_envelope_address_is_what_sanitize_address_gives(address):
    assert RawComposer(FROM).recipient(address) == sanitize_address(address, "utf-8")


@pytest.mark.parametrize("address", ["not an address\n@x", "two@at@example.com", "", "a@"])
def test_envelope_address_that_is_not_one_raises_value_error(address):
    with pytest.raises(ValueError):
        RawComposer(FROM).recipient(address)


def test_header_with_a_line_break_is_refused():
    composer = RawComposer(FROM)
    with pytest.raises(ValueError):
        composer.compose("s", "t", "", "a@example.com", "a@example.com", {"X-Evil": "a\r\nBcc: x@example.com"})
