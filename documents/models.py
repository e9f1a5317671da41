"""Documents and their pages.

A document's state diagram (the OCR job drives it, its end through the
``pdf-ocr`` type's hooks in ``documents.outcomes``; ``failed`` and ``ready``
go back to ``processing`` when OCR is asked for again)::

    uploaded ──► processing ──► ready    (every page read, or recorded with its error)
                     │
                     └────────► failed   (the whole document is unreadable, or its job failed or was cancelled)
"""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Value
from django.db.models.functions import Greatest
from django.utils import timezone


class DocumentStatus(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded"
    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


def stored_file_name(document: Document, filename: str) -> str:
    """The generated storage name: nothing the user sent reaches the storage."""
    return f"documents/{document.id.hex[:2]}/{document.id.hex}.pdf"


class Document(models.Model):
    """An uploaded PDF, its processing status and where its thumbnails are."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="documents")
    original_name = models.CharField(max_length=255)
    file = models.FileField(upload_to=stored_file_name, max_length=200)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    page_count = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=DocumentStatus.choices, default=DocumentStatus.UPLOADED)
    error = models.TextField(blank=True, default="")
    #: Stored thumbnails, size (as a string) -> storage name. Maintenance reads this rather than
    #: asking the storage about each file (a request per file on S3, over 100,000 documents).
    thumbnails = models.JSONField(default=dict, blank=True)
    #: The latest OCR job: a second OCR request while it runs answers with it.
    ocr_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="ocr_documents"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="document_owner_created")]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.status})"

    @property
    def path(self) -> Path:
        """The stored file's path: the file system storage only (the benchmarks); jobs use ``local_copy``."""
        return Path(self.file.path)

    def thumbnail_name(self, size: int) -> str | None:
        """The storage name of the thumbnail of that size (any format), or None."""
        name = (self.thumbnails or {}).get(str(size))
        return str(name) if name else None

    def thumbnail_sizes(self) -> list[int]:
        return sorted(int(size) for size in (self.thumbnails or {}) if str(size).isdigit())

    @classmethod
    def record_thumbnails(cls, document_id: str, stored: dict[int, str]) -> list[str]:
        """Record newly stored thumbnails; returns the names they replace (to delete from the storage).

        The row is locked while the map is merged: two thumbnail jobs for one
        document must not drop each other's sizes. A run calls it inside the
        platform's ``fenced()`` (``documents.thumbnails``): a run whose job was
        taken over by another worker records nothing.
        """
        with transaction.atomic():
            current = cls.objects.select_for_update().filter(id=document_id).values_list("thumbnails", flat=True)
            before = dict(current.first() or {})
            after = {**before, **{str(size): name for size, name in stored.items()}}
            cls.objects.filter(id=document_id).update(thumbnails=after)
        return [before[key] for key in after if key in before and before[key] != after[key]]

    # -- transitions -----------------------------------------------------
    @classmethod
    def link_ocr_job(cls, document_id: str, job_id: str) -> None:
        """A new OCR run starts from scratch: forget the pages of the previous run."""
        DocumentPage.objects.filter(document_id=document_id).delete()
        cls.objects.filter(id=document_id).update(
            ocr_job_id=job_id, status=DocumentStatus.PROCESSING, error="", updated_at=timezone.now()
        )

    @classmethod
    def mark_ready(cls, document_id: str) -> bool:
        return bool(
            cls.objects.filter(id=document_id, status=DocumentStatus.PROCESSING).update(
                status=DocumentStatus.READY, error="", updated_at=timezone.now()
            )
        )

    @classmethod
    def mark_failed(cls, document_id: str, error: str) -> bool:
        return bool(
            cls.objects.filter(id=document_id, status=DocumentStatus.PROCESSING).update(
                status=DocumentStatus.FAILED, error=error[:2000], updated_at=timezone.now()
            )
        )

    @classmethod
    def settle_ocr_job(cls, job_id: str, status: DocumentStatus, error: str = "") -> bool:
        """The end of an OCR job, for the document still processing with it (a later request's job wins)."""
        return bool(
            cls.objects.filter(ocr_job_id=job_id, status=DocumentStatus.PROCESSING).update(
                status=status, error=error[:2000], updated_at=timezone.now()
            )
        )


class PageSource(models.TextChoices):
    TEXT_LAYER = "text-layer", "Text layer"
    OCR = "ocr", "OCR"


class PageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class DocumentPage(models.Model):
    """The text of one page, saved as soon as it is read (a retried job resumes from here)."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="pages")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=PageStatus.choices, default=PageStatus.PENDING)
    text = models.TextField(blank=True, default="")
    source = models.CharField(max_length=16, choices=PageSource.choices, blank=True, default="")
    #: Mean word confidence of tesseract (0-100); None for a text-layer page.
    confidence = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["document", "number"]
        constraints = [models.UniqueConstraint(fields=["document", "number"], name="document_page_unique_number")]

    def __str__(self) -> str:
        return f"page {self.number} of {self.document_id} ({self.status})"


class ThumbnailMaintenancePass(models.Model):
    """One walk of thumbnail maintenance over every document, by id, a batch at a time.

    State diagram (every arrow is a model method)::

        (none open) ── open_or_resume ──► open ── advance ──► open ── advance(last=True) ──► finished
                                            ▲        │
                                            └────────┘  (one batch: cursor moves past it)

    ``cursor`` is the last document id examined; a run that stops (killed,
    its time limit, a continuation's hand-over) leaves the pass open there,
    and the next run resumes after it instead of starting again. At most one
    pass is open (``is_open`` is unique; a finished pass sets it to NULL).
    Each batch's advance is conditional on the cursor the run read, in the
    transaction that starts the batch's thumbnails jobs: two runs on one pass
    never both start jobs for the same batch.
    """

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: True while the walk goes on; NULL once finished (NULLs do not collide in the unique index).
    is_open = models.BooleanField(null=True, default=True, unique=True)
    #: The last document id examined; None before the first batch.
    cursor = models.UUIDField(null=True, blank=True)
    checked = models.PositiveBigIntegerField(default=0)
    #: Documents sent to thumbnails jobs because a size was missing.
    repaired = models.PositiveBigIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0)
    #: Job runs that walked part of it (more than one: it was resumed or handed over).
    runs = models.PositiveIntegerField(default=0)
    longest_batch_s = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        state = "finished" if self.finished_at else f"at {self.cursor or 'the start'}"
        return f"thumbnail maintenance pass {self.pk} ({state}, {self.checked} checked)"

    # -- transitions -----------------------------------------------------
    @classmethod
    def open_or_resume(cls) -> ThumbnailMaintenancePass:
        """The open pass (a stopped run's walk, resumed at its cursor), or a new one; counts this run."""
        current = cls.objects.filter(is_open=True).first()
        if current is None:
            try:
                with transaction.atomic():
                    current = cls.objects.create()
            except IntegrityError:  # another run opened one meanwhile: walk that one
                current = cls.objects.get(is_open=True)
        cls.objects.filter(pk=current.pk).update(runs=models.F("runs") + 1)
        current.refresh_from_db()
        return current

    @classmethod
    def lock_at(cls, pass_id: int, cursor: uuid.UUID | None) -> bool:
        """Lock the open pass if it still stands at ``cursor`` (inside a transaction); False if another run moved it."""
        standing = cls.objects.select_for_update().filter(pk=pass_id, is_open=True, cursor=cursor)
        return standing.values_list("pk", flat=True).first() is not None

    @classmethod
    def advance(
        cls,
        pass_id: int,
        cursor: uuid.UUID | None,
        to: uuid.UUID | None,
        *,
        checked: int,
        repaired: int,
        seconds: float,
        last: bool,
    ) -> bool:
        """Move the cursor past one batch (from ``cursor``, as read) and count it; ``last`` finishes the pass."""
        fields: dict[str, object] = {
            "cursor": to,
            "checked": models.F("checked") + checked,
            "repaired": models.F("repaired") + repaired,
            "batches": models.F("batches") + 1,
            "longest_batch_s": Greatest(models.F("longest_batch_s"), Value(seconds), output_field=models.FloatField()),
        }
        if last:
            fields.update(is_open=None, finished_at=timezone.now())
        return bool(cls.objects.filter(pk=pass_id, is_open=True, cursor=cursor).update(**fields))
