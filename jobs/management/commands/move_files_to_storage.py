"""``manage.py move_files_to_storage``: copy the files under MEDIA_ROOT into the configured storage.

Run it once after setting ``AWS_STORAGE_BUCKET_NAME`` (and the other S3
variables) on a host that still has the old MEDIA_ROOT. It is safe to
interrupt and run again: it resumes after the last file it recorded
(``jobs/ops/file_moves.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError

from jobs.ops.file_moves import MoveProgress, move_files_to_storage


class Command(BaseCommand):
    help = "Copy the files under MEDIA_ROOT into the configured storage (resumable; same names, so rows stay valid)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--source", default=None, help="The local directory to move from (default: MEDIA_ROOT).")
        parser.add_argument(
            "--state",
            default=None,
            help="The progress file (default: var/move-files-to-storage.json); a rerun resumes from it.",
        )
        parser.add_argument(
            "--delete-local",
            action="store_true",
            help="Delete each local file once the storage holds it with the same size.",
        )
        parser.add_argument("--checkpoint-every", type=int, default=100, help="Files between two progress records.")

    def handle(self, *args: Any, **options: Any) -> None:
        source = Path(options["source"] or settings.MEDIA_ROOT)
        if not source.is_dir():
            raise CommandError(f"--source {source} is not a directory")
        state = Path(options["state"] or Path(settings.VAR_DIR) / "move-files-to-storage.json")
        if options["checkpoint_every"] < 1:
            raise CommandError("--checkpoint-every must be at least 1")

        def report(progress: MoveProgress) -> None:
            done = progress.copied + progress.skipped
            self.stdout.write(f"{done} of {progress.total} files ({progress.copied} copied)")

        try:
            progress = move_files_to_storage(
                source,
                default_storage,
                state,
                delete_local=options["delete_local"],
                checkpoint_every=options["checkpoint_every"],
                report=report,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Done: {progress.total} files under {source}; {progress.copied} copied, "
            f"{progress.skipped} already in {progress.target}, {progress.deleted} local files deleted."
        )
