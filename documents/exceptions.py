"""Errors of the documents domain.

Those that retrying cannot fix subclass ``PermanentJobError``: a job that
raises one fails at once with the message as its reason, and is not retried.
"""

from __future__ import annotations

from jobs.public import PermanentJobError


class DocumentError(PermanentJobError):
    """A document that cannot be processed as it is."""


class EmptyFile(DocumentError):
    """The file has no content (0 bytes)."""


class NotAPdf(DocumentError):
    """The content is not a PDF (checked by its bytes, not by its name)."""


class FileTooLarge(DocumentError):
    """The upload is over the configured size limit."""


class EncryptedPdf(DocumentError):
    """The PDF needs a password to be opened."""


class CorruptPdf(DocumentError):
    """The PDF cannot be read (damaged or truncated)."""


class PdfHasNoPages(DocumentError):
    """The PDF opens but holds no page."""


class TooManyPages(DocumentError):
    """The PDF has more pages than ``DOCUMENT_MAX_PAGES`` allows."""


class PageTooLarge(DocumentError):
    """A page (or an image on it) would render to more pixels than the cap allows."""


class PageNotMeasurable(DocumentError):
    """A page's size or its images could not be measured, so it is not rendered (the pixel check fails closed)."""


class DocumentFileMissing(DocumentError):
    """The stored file of a document is gone."""
