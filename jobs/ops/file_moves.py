"""Move the files kept under MEDIA_ROOT into the configured storage (``manage.py move_files_to_storage``).

Rows name files relative to the storage (``documents/ab/<id>.pdf``,
``thumbnails/<id>/150.png``, ``exports/<id>.csv``), so a file keeps its name
in the target storage and no row changes. The move is resumable:

* names are handled in sorted order, and a state file records the last name
  stored (written atomically every few files): a rerun starts after it;
* a file the target already holds with the same size is skipped (a rerun
  after a crash between two checkpoints asks the target once per file);
* a name whose upload was interrupted is stored again (the file system
  target's half-written file has another size; S3 keeps no half object).

Local files are kept unless ``delete_local`` is asked, and then deleted only
once the target holds them with the same size. Temporary leftovers (an
export's ``.part``, a thumbnail's ``.partial``, dot files) are not moved.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.core.files.storage import Storage

from jobs.core.files import local_path, save_local_file, stored_size

logger = logging.getLogger(__name__)

LEFTOVER_SUFFIXES = (".part", ".partial")


@dataclass
class MoveProgress:
    """Where a move stands; what the state file holds."""

    target: str
    last: str | None = None
    copied: int = 0
    skipped: int = 0
    deleted: int = 0
    total: int = 0


def describe_storage(storage: Storage) -> str:
    """A storage's identity for the state file: a rerun against another target starts over."""
    bucket = getattr(storage, "bucket_name", None)
    if bucket:
        return f"s3://{bucket}/{getattr(storage, 'location', '')}".rstrip("/")
    location = getattr(storage, "location", None)
    return f"{type(storage).__name__}:{location}"


def local_names(root: Path) -> list[str]:
    """Relative names (with ``/``) of the files under ``root`` worth moving, sorted."""
    names = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        for name in files:
            if name.startswith(".") or name.endswith(LEFTOVER_SUFFIXES):
                continue
            names.append(Path(directory, name).relative_to(root).as_posix())
    return sorted(names)


def _load(state_path: Path, target: str) -> MoveProgress:
    try:
        saved = json.loads(state_path.read_text())
    except (FileNotFoundError, ValueError):
        return MoveProgress(target=target)
    if saved.get("target") != target:
        return MoveProgress(target=target)
    return MoveProgress(**{key: saved[key] for key in asdict(MoveProgress(target=target)) if key in saved})


def _save(state_path: Path, progress: MoveProgress) -> None:
    partial = state_path.with_name(f".{state_path.name}.partial")
    partial.write_text(json.dumps(asdict(progress)))
    os.replace(partial, state_path)


def move_files_to_storage(
    root: Path,
    target: Storage,
    state_path: Path,
    *,
    delete_local: bool = False,
    checkpoint_every: int = 100,
    report: Callable[[MoveProgress], Any] | None = None,
) -> MoveProgress:
    """Store every file under ``root`` in ``target`` under the same name; see the module docstring."""
    own_path = local_path(target, ".")
    if own_path is not None and own_path.resolve() == root.resolve():
        raise ValueError(f"the configured storage is {root} itself: there is nothing to move")
    progress = _load(state_path, describe_storage(target))
    names = local_names(root)
    progress.total = len(names)
    since_checkpoint = 0
    for name in names:
        if progress.last is not None and name <= progress.last:
            continue
        source = root / name
        size = source.stat().st_size
        held = stored_size(target, name)
        if held == size:
            progress.skipped += 1
        else:
            if held is not None:
                # A half-written copy: the file system storage would pick another name beside it.
                target.delete(name)
            stored = save_local_file(target, name, source)
            if stored != name:
                raise RuntimeError(f"the storage kept {name!r} as {stored!r}: rows would name the wrong file")
            progress.copied += 1
        if delete_local:
            source.unlink()
            progress.deleted += 1
        progress.last = name
        since_checkpoint += 1
        if since_checkpoint >= checkpoint_every:
            _save(state_path, progress)
            since_checkpoint = 0
            if report is not None:
                report(progress)
    _save(state_path, progress)
    logger.info(
        "Moved files to %s: %s copied, %s already there, %s local deleted",
        progress.target,
        progress.copied,
        progress.skipped,
        progress.deleted,
    )
    return progress
