"""``manage.py move_files_to_storage``: local files into S3, resumable after a kill -9."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command

from documents.models import Document
from tests.documents import pdfs
from tests.workers import ROOT, wait_for

FILES = 300


def _local_media(root: Path, count: int) -> dict[str, bytes]:
    """``count`` files laid out as documents, thumbnails and exports are, plus leftovers not to move."""
    files: dict[str, bytes] = {}
    for n in range(count):
        key = uuid.UUID(int=n).hex
        kind = n % 3
        name = (
            f"documents/{key[:2]}/{key}.pdf"
            if kind == 0
            else f"thumbnails/{key}/150.png"
            if kind == 1
            else f"exports/{key}.csv"
        )
        files[name] = f"file {n} ".encode() * (1 + n % 7)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "exports" / "unfinished.csv.part").write_bytes(b"half")
    (root / "thumbnails" / ".150.png.partial").write_bytes(b"half")
    return files


def _move(root: Path, state: Path) -> str:
    out = io.StringIO()
    call_command("move_files_to_storage", "--source", str(root), "--state", str(state), stdout=out)
    return out.getvalue()


@pytest.mark.slow
def test_a_move_killed_midway_resumes_after_its_last_record_and_skips_what_is_stored(s3_bucket, tmp_path):
    # Given local files and a bucket
    root, state = tmp_path / "media", tmp_path / "move-state.json"
    files = _local_media(root, FILES)
    # When the command is killed -9 after it recorded some progress
    env = {
        **os.environ,
        **s3_bucket.env,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "MEDIA_ROOT": str(root),
    }
    command = [sys.executable, "manage.py", "move_files_to_storage", "--state", str(state), "--checkpoint-every", "10"]
    with open(tmp_path / "move.log", "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: state.exists() and json.loads(state.read_text())["copied"] >= 30, 60, 0.01, "progress")
        assert process.poll() is None, "the move finished before it could be interrupted"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    recorded = json.loads(state.read_text())
    stored_at_kill = s3_bucket.objects()
    assert recorded["copied"] <= len(stored_at_kill) < FILES
    # And it runs again
    output = _move(root, state)
    # Then every file is in the bucket under its own name with its bytes; the leftovers are not
    assert s3_bucket.objects() == {name: len(data) for name, data in files.items()}
    assert all(s3_bucket.read(name) == files[name] for name in list(files)[::37])
    # And the rerun started after the last recorded file: what was stored after it was skipped, by size
    final = json.loads(state.read_text())
    assert final["skipped"] == len(stored_at_kill) - recorded["copied"]
    assert final["copied"] == FILES - final["skipped"]
    assert f"Done: {FILES} files" in output
    # And a third run has nothing left to do
    _move(root, state)
    assert json.loads(state.read_text()) == final


def test_after_the_move_a_document_row_opens_its_file_from_the_bucket(s3_bucket, tmp_path, user, user_api):
    # Given a document stored on the local disk before object storage
    root, state = tmp_path / "media", tmp_path / "move-state.json"
    data = pdfs.text_pdf_bytes(["kept"])
    document = Document.objects.create(owner=user, original_name="old.pdf", size=len(data), sha256="0" * 64)
    name = f"documents/{document.id.hex[:2]}/{document.id.hex}.pdf"
    (root / name).parent.mkdir(parents=True)
    (root / name).write_bytes(data)
    Document.objects.filter(id=document.id).update(file=name)
    # When the files are moved and the local copy is gone
    _move(root, state)
    shutil.rmtree(root)
    # Then the unchanged row downloads its file from the bucket
    response = user_api.get(f"/api/documents/{document.id}/file")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
