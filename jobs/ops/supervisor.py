"""Start, watch and stop the processes that make up a running Conveyor.

A :class:`Supervisor` runs one child per :class:`ChildSpec`, each in its own
session (and so its own process group), restarts a child that exits while it
should be running, and on :meth:`Supervisor.stop` shuts everything down
without leaving a process behind::

    supervisor = Supervisor([web_spec(), *(pool_spec(p) for p in all_queues()), scheduler_spec()])
    supervisor.start()
    ...
    supervisor.stop(timeout=60)

Stopping sends SIGTERM once, to each child's main process only: a Dramatiq
worker process that receives the signal twice (once directly, once from its
parent) can hang on shutdown. Only what is still alive when the timeout runs
out gets SIGKILL, and then its whole process group does.

Children's output (stdout and stderr together) is copied line by line to the
supervisor's output, each line prefixed with the child's name.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from jobs.core.queues import QueuePolicy

logger = logging.getLogger(__name__)

# The project directory (where manage.py is): this module is jobs/ops/supervisor.py.
BASE_DIR = Path(__file__).resolve().parents[2]
MANAGE_PY = BASE_DIR / "manage.py"


def _lower_session_priority(pid: int, nice: int, name: str) -> None:
    """Give the child's session (it starts its own) the niceness too.

    With autogroup scheduling on (``/proc/sys/kernel/sched_autogroup_enabled``),
    the kernel shares the CPU between sessions first and only then between
    the processes of a session by their nice values: niced pools in sessions
    of their own got as much CPU as the web server (measured: loaded p99 2.8-3.8x
    idle, 1.2x with this).
    """
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError as exc:  # no autogroup support, or not allowed: nice alone still applies
        logger.debug("could not set the autogroup niceness of %s: %s", name, exc)


@dataclass(frozen=True)
class ChildSpec:
    """How to start one supervised process.

    ``env`` holds only the extras: the child gets ``os.environ`` plus these.
    ``nice`` lowers the child's CPU priority (through ``nice -n``, so the
    child's own children inherit it). ``db_connections`` is the most database
    connections the child may hold, for the connection budget.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = BASE_DIR
    restart: bool = True
    nice: int = 0
    db_connections: int = 0


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = 0.0
    restart_at: float | None = None
    reap_deadline: float | None = None
    group_killed: bool = True
    restarts: int = 0
    reader: threading.Thread | None = None


_PROC = Path("/proc")


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies waiting for init do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not _PROC.is_dir():
        return True
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the parenthesised command: state, ppid, pgrp, ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no process of the group is left (killed orphans are reaped by init)."""
    deadline = time.monotonic() + timeout
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _signal_group(pgid: int, signum: int) -> None:
    if pgid == os.getpgrp():  # never signal our own group
        return
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


class Supervisor:
    """Run a set of child processes, restart them on failure, stop them cleanly.

    ``start()`` returns at once; a background thread watches the children.
    A child that exits while the supervisor runs is restarted (when its spec
    says ``restart``) after a backoff that starts at ``backoff_initial``
    seconds, doubles up to ``backoff_max``, and resets once the child has
    stayed up for ``stable_after`` seconds. Before a restart, whatever is
    left of the dead child's process group is sent SIGTERM, then SIGKILL
    after ``orphan_grace`` seconds, so two generations never run side by side.
    """

    def __init__(
        self,
        specs: Iterable[ChildSpec],
        *,
        output: IO[str] | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        stable_after: float = 60.0,
        orphan_grace: float = 5.0,
        poll_interval: float = 0.2,
    ) -> None:
        self._children: dict[str, _Child] = {}
        for spec in specs:
            if spec.name in self._children:
                raise ValueError(f"duplicate child name {spec.name!r}")
            self._children[spec.name] = _Child(spec=spec, backoff=backoff_initial)
        self._output = output if output is not None else sys.stdout
        self._output_lock = threading.Lock()
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._stable_after = stable_after
        self._orphan_grace = orphan_grace
        self._poll_interval = poll_interval
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    # --- public API -----------------------------------------------------------

    @property
    def specs(self) -> list[ChildSpec]:
        return [child.spec for child in self._children.values()]

    @property
    def children(self) -> dict[str, subprocess.Popen[bytes]]:
        """The current process of each child, by name (absent if it never started)."""
        with self._lock:
            return {name: c.proc for name, c in self._children.items() if c.proc is not None}

    @property
    def restarts(self) -> dict[str, int]:
        """How many times each child has been restarted."""
        with self._lock:
            return {name: c.restarts for name, c in self._children.items()}

    def db_connections(self) -> int:
        """The most database connections all children together may hold."""
        return sum(child.spec.db_connections for child in self._children.values())

    def start(self) -> None:
        """Start every child and the thread that restarts them."""
        if self._monitor is not None:
            raise RuntimeError("supervisor already started")
        with self._lock:
            for child in self._children.values():
                self._spawn(child)
        self._monitor = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._monitor.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every child: SIGTERM once to each main process, SIGKILL to the leftovers.

        Waits up to ``timeout`` seconds in total for the main processes to
        exit; then kills the process group of each child still running. On
        return no process of any child's group remains.
        """
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join()
        deadline = time.monotonic() + timeout
        with self._lock:
            children = list(self._children.values())
        for child in children:
            proc = child.proc
            if proc is not None and proc.poll() is None:
                logger.info("stopping %s (pid %d)", child.spec.name, proc.pid)
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for child in children:
            proc = child.proc
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s (pid %d) still running after %.0f s: killing its process group",
                    child.spec.name,
                    proc.pid,
                    timeout,
                )
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        for child in children:
            # The main process is gone. Helpers that exit on their own once it
            # has (multiprocessing's resource tracker) get a moment; anything
            # else left in the group is an orphan.
            if child.proc is None or _wait_group_gone(child.proc.pid, 1.0):
                continue
            logger.warning("killing leftover processes of %s", child.spec.name)
            _signal_group(child.proc.pid, signal.SIGKILL)
            if not _wait_group_gone(child.proc.pid, 2.0):
                logger.warning("processes of %s are still in the process table", child.spec.name)
        for child in children:
            if child.reader is not None:
                child.reader.join(timeout=5)
        for child in children:
            if child.proc is not None:
                logger.info("%s exited with code %s", child.spec.name, child.proc.returncode)

    def run_until_signalled(self, timeout: float = 60.0) -> None:
        """Start, block until SIGINT or SIGTERM, then stop. For the main thread only."""
        requested = threading.Event()

        def _request_stop(signum: int, _frame: object) -> None:
            if requested.is_set():
                logger.info("already stopping (signal %d ignored)", signum)
                return
            logger.info("received %s: stopping all processes", signal.Signals(signum).name)
            requested.set()

        previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            while not requested.wait(1.0):
                pass
        finally:
            self.stop(timeout=timeout)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # --- internals ------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        argv = list(spec.argv)
        if spec.nice:
            nice = shutil.which("nice")
            if nice is None:
                logger.warning("nice not found: %s runs at normal priority", spec.name)
            else:
                argv = [nice, "-n", str(spec.nice), *argv]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        child.restart_at = None
        child.reap_deadline = None
        child.group_killed = False
        child.started_at = time.monotonic()
        try:
            # argv comes from the supervisor's own specs (this virtualenv's python and manage.py), no shell.
            proc = subprocess.Popen(  # noqa: S603
                argv,
                cwd=spec.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError:
            logger.exception("could not start %s: %s", spec.name, " ".join(argv))
            child.proc = None
            child.group_killed = True
            self._schedule_restart(child, time.monotonic())
            return
        child.proc = proc
        if spec.nice:
            _lower_session_priority(proc.pid, spec.nice, spec.name)
        logger.info("started %s (pid %d): %s", spec.name, proc.pid, " ".join(argv))
        if proc.stdout is None:  # Popen was given stdout=PIPE: never, unless that changes
            raise RuntimeError(f"{spec.name}: no output pipe to read")
        child.reader = threading.Thread(
            target=self._copy_output, args=(spec.name, proc.stdout), name="output-" + spec.name, daemon=True
        )
        child.reader.start()

    def _copy_output(self, name: str, stream: IO[bytes]) -> None:
        prefix = "[" + name + "] "
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                with self._output_lock:
                    try:
                        self._output.write(prefix + line + "\n")
                        self._output.flush()
                    except (OSError, ValueError):  # our own output is closed
                        pass

    def _schedule_restart(self, child: _Child, now: float) -> None:
        if not child.spec.restart or self._stopping.is_set():
            child.restart_at = None
            return
        if now - child.started_at >= self._stable_after:
            child.backoff = self._backoff_initial
        child.restart_at = now + child.backoff
        logger.info("restarting %s in %.1f s", child.spec.name, child.backoff)
        child.backoff = min(child.backoff * 2, self._backoff_max)

    def _watch(self) -> None:
        while not self._stopping.wait(self._poll_interval):
            with self._lock:
                if self._stopping.is_set():
                    return
                now = time.monotonic()
                for child in self._children.values():
                    try:
                        self._check(child, now)
                    except Exception:  # the watcher must survive anything
                        logger.exception("supervising %s failed", child.spec.name)

    def _check(self, child: _Child, now: float) -> None:
        proc = child.proc
        if proc is not None and child.reap_deadline is None and child.restart_at is None:
            code = proc.poll()
            if code is None:
                return
            logger.warning(
                "%s (pid %d) exited unexpectedly with code %s after %.1f s",
                child.spec.name,
                proc.pid,
                code,
                now - child.started_at,
            )
            child.reap_deadline = now + self._orphan_grace
            if _group_alive(proc.pid):
                _signal_group(proc.pid, signal.SIGTERM)
            else:
                child.group_killed = True
            self._schedule_restart(child, now)
        if proc is not None and not child.group_killed and child.reap_deadline is not None:
            if not _group_alive(proc.pid):
                child.group_killed = True
            elif now >= child.reap_deadline:
                logger.warning("killing leftover processes of %s", child.spec.name)
                _signal_group(proc.pid, signal.SIGKILL)
                child.group_killed = True
        if child.restart_at is not None and now >= child.restart_at and child.group_killed:
            child.restarts += 1
            self._spawn(child)


def _python() -> str:
    return sys.executable


def _django_setting(name: str, default: float) -> float:
    from django.conf import settings

    return float(getattr(settings, name, default))


def web_spec(
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    forwarded_allow_ips: str | None = None,
) -> ChildSpec:
    """The ASGI web server (uvicorn); defaults from HOST, PORT, WEB_WORKERS and FORWARDED_ALLOW_IPS.

    ``X-Forwarded-For``/``-Proto`` count only from FORWARDED_ALLOW_IPS (the TLS proxy; default
    127.0.0.1): from anyone, a client would choose its own address past per-address throttles.
    """
    host = host or os.environ.get("HOST", "127.0.0.1")
    port = port or int(os.environ.get("PORT", "8000"))
    workers = workers or int(os.environ.get("WEB_WORKERS", "2"))
    forwarded_allow_ips = forwarded_allow_ips or os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1"
    argv = [
        _python(),
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        # Django's ASGI handler does not speak the lifespan protocol.
        "--lifespan",
        "off",
        "--proxy-headers",
        "--forwarded-allow-ips",
        forwarded_allow_ips,
    ]
    # Per process: the thread Django runs sync views in, and the live event
    # publisher (owner look-ups for events of cancels and retries).
    return ChildSpec(name="web", argv=argv, env=dict(extra_env or {}), db_connections=workers * 2)


def pool_spec(
    policy: QueuePolicy,
    extra_env: Mapping[str, str] | None = None,
    *,
    nice: int | None = None,
    shutdown_grace_s: float | None = None,
) -> ChildSpec:
    """One Dramatiq worker pool (``rundramatiq``) that consumes only ``policy.name``.

    Each process holds the queue table's ``held_messages`` (one per thread
    unless the queue says more), so waiting messages stay in Redis, where
    priorities apply. Pools run at a lower CPU
    priority than the web server (``WORKER_NICE``, default 10).
    """
    if shutdown_grace_s is None:
        shutdown_grace_s = _django_setting("WORKER_SHUTDOWN_GRACE_S", 25.0)
    if nice is None:
        nice = int(os.environ.get("WORKER_NICE", "10"))
    argv = [
        _python(),
        str(MANAGE_PY),
        "rundramatiq",
        "--processes",
        str(policy.processes),
        "--threads",
        str(policy.threads),
        "--queues",
        policy.name,
        "--worker-shutdown-timeout",
        # Past the grace period the watchdog interrupts running jobs and the
        # mirror requeues them: Dramatiq must still be waiting then.
        str(int((shutdown_grace_s + 10) * 1000)),
    ]
    env = {"dramatiq_queue_prefetch": str(policy.held_messages), **(extra_env or {})}
    return ChildSpec(
        name="pool:" + policy.name,
        argv=argv,
        env=env,
        nice=nice,
        # Each worker thread, plus the state writer, the watchdog and the live
        # event publisher (its owner look-ups) of each process.
        db_connections=policy.processes * (policy.threads + 3),
    )


def scheduler_spec(extra_env: Mapping[str, str] | None = None) -> ChildSpec:
    """A scheduler process (``runscheduler``); more than one may run, each fire happens once."""
    argv = [_python(), str(MANAGE_PY), "runscheduler"]
    # Its fire threads, the duties thread (reconciler) and APScheduler's job store.
    connections = int(_django_setting("SCHEDULER_THREADS", 2)) + 2
    return ChildSpec(name="scheduler", argv=argv, env=dict(extra_env or {}), db_connections=connections)
