"""Run work in child processes that a time limit or a cancel can kill.

A worker thread blocked in ``subprocess`` or in C code cannot be interrupted
by an exception. Work that may block or burn CPU for long runs in a child
process instead: each child leads its own process group, is registered with
the watchdog, runs under optional memory and CPU limits, and is killed (with
everything it started) when its job times out, is cancelled or the worker
shuts down. Running CPU work in children also keeps the worker's GIL free,
so its heartbeats to Redis never starve.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import signal
import subprocess
import threading
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import psutil
from dramatiq.common import q_name

from jobs.core.context import current_job, register_child, unregister_child
from jobs.core.exceptions import JobError, PermanentJobError, readable_reason
from jobs.worker.stopping import raise_stop

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ChildProcessFailed(JobError):
    """A child process exited with an error, was killed by a limit, or died."""


class ChildFailedPermanently(ChildProcessFailed, PermanentJobError):
    """The function run in a child raised a PermanentJobError: not retried either."""


def _limits(memory_limit_mb: int | None, cpu_limit_s: int | None) -> Callable[[], None]:
    def apply() -> None:
        if memory_limit_mb:
            size = memory_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        if cpu_limit_s:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_limit_s, cpu_limit_s + 5))

    return apply


def _raise_if_stopped() -> None:
    job = current_job()
    if job is not None and job.stop_reason:
        raise_stop(job, job.stop_reason)


def run_command(
    args: Sequence[str],
    *,
    timeout_s: float | None = None,
    memory_limit_mb: int | None = None,
    cpu_limit_s: int | None = None,
    input_bytes: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command as a killable child; its output is returned, errors raise ChildProcessFailed.

    ``env`` adds to (does not replace) this process's environment.
    """
    # The platform's callers pass fixed programs (this python, pdftoppm, tesseract), never a shell.
    proc = subprocess.Popen(  # noqa: S603
        list(args),
        stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=None if env is None else {**os.environ, **env},
        preexec_fn=_limits(memory_limit_mb, cpu_limit_s),  # noqa: PLW1509 - only setrlimit runs there
    )
    register_child(proc.pid)
    try:
        stdout, stderr = proc.communicate(input=input_bytes, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        raise ChildProcessFailed(f"{args[0]} took longer than {timeout_s} s") from None
    finally:
        unregister_child(proc.pid)
        if proc.poll() is None:
            _kill_group(proc.pid)
            proc.wait()
    _raise_if_stopped()
    if proc.returncode != 0:
        reason = _describe_exit(proc.returncode, memory_limit_mb, cpu_limit_s)
        detail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ChildProcessFailed(f"{args[0]} {reason}" + (f": {' '.join(detail)}" if detail else ""))
    return subprocess.CompletedProcess(list(args), proc.returncode, stdout, stderr)


def _describe_exit(code: int, memory_limit_mb: int | None, cpu_limit_s: int | None) -> str:
    if code == -signal.SIGKILL:
        return "was killed"
    if code in (-signal.SIGXCPU,) and cpu_limit_s:
        return f"used more than its {cpu_limit_s} s CPU limit"
    if code < 0:
        return f"died of signal {signal.Signals(-code).name}"
    if memory_limit_mb and code in (1, 137):
        return f"failed (exit {code}; memory limit {memory_limit_mb} MB)"
    return f"failed (exit {code})"


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _child_main(
    conn: Connection,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    memory_limit_mb: int | None,
    cpu_limit_s: int | None,
) -> None:
    os.setsid()  # its own group, so a kill takes whatever it starts too
    _limits(memory_limit_mb, cpu_limit_s)()
    try:
        conn.send((True, func(*args, **kwargs)))
    except MemoryError:
        conn.send((False, f"ran out of memory (limit {memory_limit_mb} MB)"))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as text
        # The reason people may read (a JobError's text, else a generic one), then
        # the child's traceback, which the parent keeps for staff only.
        details = "".join(traceback.format_exception(exc)[-6:])
        conn.send((False, readable_reason(exc), isinstance(exc, PermanentJobError), details))
    finally:
        conn.close()


_context = multiprocessing.get_context("forkserver")
# What the forkserver imports once, so that a child starts in milliseconds:
# without it (Python 3.11) every child re-ran the worker's entry point and
# reloaded Dramatiq, 120-240 ms per child, measured on per-page OCR children.
_preload = ["__main__", "dramatiq.__main__", "jobs.worker.isolation"]


def preload_in_children(*modules: str, warm_for_queue: str | None = None) -> None:
    """Have the forkserver import ``modules`` once (call from ``AppConfig.ready``, before any child starts).

    ``warm_for_queue``: a worker consuming that queue starts the forkserver at
    boot (``start_child_server``), so its first job does not wait for it.
    """
    _preload.extend(module for module in modules if module not in _preload)
    _context.set_forkserver_preload(list(_preload))
    if warm_for_queue:
        _warm_queues.add(warm_for_queue)


_warm_queues: set[str] = set()


def start_child_server(queues: set[str] | None) -> None:
    """Start the forkserver now, in the background, if a worker of ``queues`` (None: all) runs children.

    Started lazily, it costs the first job that needs a child its start-up
    and imports (~0.3-0.5 s here): a 100,000-row export takes about as long.
    """
    if queues is not None and not (_warm_queues & {q_name(queue) for queue in queues}):
        return
    threading.Thread(target=_ensure_forkserver, name="conveyor-forkserver-start", daemon=True).start()


def _ensure_forkserver() -> None:
    try:
        multiprocessing.forkserver.ensure_running()
    except Exception:
        logger.warning("Could not start the forkserver ahead of time; the first child will", exc_info=True)


_last_peak = threading.local()


def last_peak_rss_mb() -> float:
    """Peak resident memory of the last ``run_in_child`` call of this thread (with a ceiling set)."""
    return float(getattr(_last_peak, "value", 0.0))


def _resident_mb(pid: int) -> float:
    """Resident memory of a process and everything it started, in MB."""
    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        return 0.0
    return float(total) / (1024 * 1024)


class MemoryCeilingExceeded(ChildProcessFailed):
    """A child process grew past its resident-memory ceiling and was stopped."""


def run_in_child(
    func: Callable[..., T],
    *args: Any,
    memory_limit_mb: int | None = None,
    cpu_limit_s: int | None = None,
    rss_limit_mb: int | None = None,
    **kwargs: Any,
) -> T:
    """Call ``func(*args, **kwargs)`` in a killable child process and return its result.

    ``func`` must be a module-level function and its arguments and result
    picklable; keep both small (ids, paths, page numbers, text).
    ``memory_limit_mb`` caps address space (the child's allocations fail);
    ``rss_limit_mb`` is a ceiling on resident memory, watched from outside:
    a child that crosses it is killed and ``MemoryCeilingExceeded`` raised.
    The peak resident memory seen is left in ``last_peak_rss_mb``.
    """
    parent_conn, child_conn = _context.Pipe(duplex=False)
    process = _context.Process(
        target=_child_main, args=(child_conn, func, args, kwargs, memory_limit_mb, cpu_limit_s), daemon=True
    )
    process.start()
    child_conn.close()
    if process.pid is None:  # start() returned, so the child exists; a pid-less one cannot be watched
        raise RuntimeError("the isolated child did not start")
    register_child(process.pid)
    peak = 0.0
    over_ceiling = False
    try:
        outcome: tuple[Any, ...] | None = None
        while outcome is None:
            if rss_limit_mb is not None:
                peak = max(peak, _resident_mb(process.pid))
                if peak > rss_limit_mb:
                    over_ceiling = True
                    _kill_group(process.pid)
                    break
            if parent_conn.poll(0.1 if rss_limit_mb else 0.2):
                try:
                    outcome = parent_conn.recv()
                except EOFError:
                    break
            elif not process.is_alive():
                if parent_conn.poll(0):
                    continue
                break
        process.join(timeout=5)
    finally:
        unregister_child(process.pid)
        if process.is_alive():
            _kill_group(process.pid)
            process.join()
        parent_conn.close()
    _last_peak.value = peak
    _raise_if_stopped()
    if over_ceiling:
        raise MemoryCeilingExceeded(f"stopped: it used more than its {rss_limit_mb} MB memory ceiling")
    if outcome is None:
        how = _describe_exit(process.exitcode or 0, memory_limit_mb, cpu_limit_s)
        raise ChildProcessFailed(f"child process {how} before answering")
    ok, value = outcome[0], outcome[1]
    if not ok:
        permanent = len(outcome) > 2 and outcome[2]
        failure = (ChildFailedPermanently if permanent else ChildProcessFailed)(str(value))
        if len(outcome) > 3 and outcome[3]:
            # In the job's traceback (admin only), never in its error.
            failure.add_note(f"In the child process:\n{outcome[3]}")
        raise failure
    return value  # type: ignore[no-any-return]
