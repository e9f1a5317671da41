"""The job the current worker thread is running, for progress and child processes."""

from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunningJob:
    job_id: str
    job_type: str
    queue: str
    thread_id: int
    time_limit_s: int | None
    parent_id: str | None = None
    #: The fair-dispatch bucket the job is served from, and its priority (``jobs.dispatch.fairness``).
    owner: str = ""
    priority: str = "normal"
    #: The fencing token of this run: the attempt it claimed and the worker (Dramatiq broker id)
    #: holding it. Every write the run makes carries both (``jobs.state.fencing``).
    attempt: int = 0
    worker_id: str = ""
    started: float = field(default_factory=time.monotonic)
    #: Process ids of child processes (each leads its own process group).
    children: set[int] = field(default_factory=set)
    #: When progress was last written (the claim counts as a write).
    last_progress_write: float = field(default_factory=time.monotonic)
    #: The latest progress report not yet written; the completion writes it.
    pending_progress: dict[str, Any] | None = None
    pending_percent: int = 0
    stop_reason: str = ""
    #: Inside ``uninterrupted()`` blocks (an email being handed to its server): the watchdog
    #: then only records its stop, and the block raises it when it ends.
    critical: int = 0

    @property
    def deadline(self) -> float | None:
        return None if self.time_limit_s is None else self.started + self.time_limit_s


_local = threading.local()


def current_job() -> RunningJob | None:
    """The job this thread runs, or None outside a worker (a shell, a test)."""
    return getattr(_local, "job", None)


def set_current_job(job: RunningJob | None) -> None:
    _local.job = job


#: Guards the children of running jobs (the watchdog reads them while job threads add).
registry_lock = threading.Lock()


def register_child(pid: int) -> None:
    """Put a child process of the current job under the watchdog's care (it kills the group on a stop)."""
    job = current_job()
    if job is not None:
        with registry_lock:
            job.children.add(pid)


def unregister_child(pid: int) -> None:
    job = current_job()
    if job is not None:
        with registry_lock:
            job.children.discard(pid)


def drop_queued_stop() -> None:
    """Drop a stop the watchdog queued for this thread and that has not landed yet.

    Call it holding ``registry_lock`` (the watchdog queues its exception under it).
    An asynchronous exception lands at the thread's next bytecode, wherever that
    is: once the run has ended on its own (a stop the job thread raised itself,
    or the actor returning), it would land in Dramatiq's own handling and kill
    the worker thread, leaving the job ``active`` under a live worker.
    """
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)
