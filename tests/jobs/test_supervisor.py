"""The supervisor behind ``manage.py runconveyor``: restart with backoff, and a clean stop.

Children are small Python one-liners that record what happens to them in a
file (start and exit times on the system-wide monotonic clock, signals
received), so the tests assert on what the processes saw, not on the
supervisor's internals. The delays the supervisor chose are read from its log:
measured gaps give lower bounds only, so a slow machine cannot fail a test.
"""

from __future__ import annotations

import inspect
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from jobs.core.queues import all_queues
from jobs.ops.supervisor import ChildSpec, Supervisor, pool_spec, scheduler_spec, web_spec
from tests.workers import ROOT, wait_for

# Writes "start <t>"; crashes at once, except that start number STAY_ON (1-based)
# stays up STAY_S seconds before crashing and any later start stays up.
CRASHER = """
import sys, time
from pathlib import Path
log, stay_on, stay_s = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
with log.open("a") as f:
    f.write(f"start {time.monotonic()}\\n")
starts = sum(1 for line in log.read_text().splitlines() if line.startswith("start"))
if stay_on and starts > stay_on:
    time.sleep(60)
if starts == stay_on:
    time.sleep(stay_s)
with log.open("a") as f:
    f.write(f"exit {time.monotonic()}\\n")
sys.exit(1)
"""

# Starts a grandchild (`sleep`, in its process group) and records every SIGTERM.
# POLITE exits 0.5 s after the first SIGTERM (long enough to see a second one),
# leaving its grandchild behind; otherwise it ignores SIGTERM. (Two signals sent
# back to back arrive as one: this catches a second one sent later, such as a
# second stop pass or a SIGTERM to the whole group before the SIGKILL.)
SIGNAL_RECORDER = """
import signal, subprocess, sys, time
from pathlib import Path
log, polite = Path(sys.argv[1]), sys.argv[2] == "polite"
terms = []
def on_term(signum, frame):
    terms.append(time.monotonic())
    with log.open("a") as f:
        f.write(f"term {terms[-1]}\\n")
signal.signal(signal.SIGTERM, on_term)
grandchild = subprocess.Popen(["sleep", "60"])
with log.open("a") as f:
    f.write(f"grandchild {grandchild.pid}\\nready\\n")
while not (polite and terms and time.monotonic() - terms[0] > 0.5):
    time.sleep(0.05)
"""

# The supervisor in a process of its own, as runconveyor runs it: SIGTERM stops it.
SUPERVISOR = """
import json, logging, sys
from jobs.ops.supervisor import ChildSpec, Supervisor
logging.basicConfig(level=logging.INFO, format="%(message)s")
specs = [ChildSpec(name=name, argv=argv) for name, argv in json.loads(sys.argv[1])]
Supervisor(specs, poll_interval=0.05).run_until_signalled(timeout=float(sys.argv[2]))
"""


def _crasher(log: Path, *, stay_on: int = 0, stay_s: float = 0.0) -> ChildSpec:
    return ChildSpec(name="crasher", argv=[sys.executable, "-c", CRASHER, str(log), str(stay_on), str(stay_s)])


def _events(log: Path, kind: str) -> list[float]:
    return [float(line.split()[1]) for line in log.read_text().splitlines() if line.startswith(kind + " ")]


def _starts(log: Path) -> int:
    return len(_events(log, "start")) if log.exists() else 0


def _scheduled_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The restart delays the supervisor chose, in order (from its "restarting ... in" log lines)."""
    return [
        float(record.args[1])  # type: ignore[arg-type,index]
        for record in caplog.records
        if record.name == "jobs.ops.supervisor" and record.msg == "restarting %s in %.1f s"
    ]


@pytest.fixture
def supervise(caplog: pytest.LogCaptureFixture) -> Iterator[list[Supervisor]]:
    """Supervisors that a test appends here are stopped when it ends."""
    caplog.set_level(logging.INFO, logger="jobs.ops.supervisor")
    started: list[Supervisor] = []
    yield started
    for supervisor in started:
        supervisor.stop(timeout=5)


def test_a_dying_process_is_restarted_after_a_doubling_backoff_up_to_the_maximum(tmp_path, caplog, supervise):
    # Given a child that crashes as soon as it starts, supervised with a short backoff
    log = tmp_path / "crasher.log"
    supervisor = Supervisor([_crasher(log)], backoff_initial=0.2, backoff_max=0.8, poll_interval=0.02)
    supervise.append(supervisor)

    # When it has been restarted four times
    supervisor.start()
    wait_for(lambda: _starts(log) >= 5, 20, 0.05, "four restarts")

    # Then each wait doubled the one before, up to the maximum
    assert _scheduled_delays(caplog)[:4] == [0.2, 0.4, 0.8, 0.8]
    # and each restart really came that long after the crash before it
    starts, exits = _events(log, "start"), _events(log, "exit")
    gaps = [starts[i + 1] - exits[i] for i in range(4)]
    for gap, delay in zip(gaps, [0.2, 0.4, 0.8, 0.8], strict=True):
        assert gap >= delay - 0.01, gaps
    assert supervisor.restarts["crasher"] >= 4


def test_backoff_resets_once_a_process_has_stayed_up(tmp_path, caplog, supervise):
    # Given a child that crashes three times at once, then stays up past `stable_after` and crashes again
    log = tmp_path / "crasher.log"
    spec = _crasher(log, stay_on=4, stay_s=1.2)
    supervisor = Supervisor([spec], backoff_initial=0.2, backoff_max=10, stable_after=1.0, poll_interval=0.02)
    supervise.append(supervisor)

    # When it is restarted after that crash
    supervisor.start()
    wait_for(lambda: _starts(log) >= 5, 20, 0.05, "the restart after the stable run")

    # Then the backoff starts again from the initial delay instead of doubling to 1.6 s
    assert _scheduled_delays(caplog) == [0.2, 0.4, 0.8, 0.2]
    starts, exits = _events(log, "start"), _events(log, "exit")
    assert starts[4] - exits[3] >= 0.2 - 0.01


def test_default_backoff_starts_at_one_second_and_doubles(tmp_path, caplog, supervise):
    # Given a crashing child under the supervisor's defaults (as runconveyor makes it)
    log = tmp_path / "crasher.log"
    supervisor = Supervisor([_crasher(log)])
    supervise.append(supervisor)

    # When it has crashed twice
    supervisor.start()
    wait_for(lambda: len(_scheduled_delays(caplog)) >= 2, 20, 0.05, "two crashes")

    # Then it waited one second, then two
    assert _scheduled_delays(caplog)[:2] == [1.0, 2.0]
    starts, exits = _events(log, "start"), _events(log, "exit")
    assert starts[1] - exits[0] >= 1.0 - 0.01


def test_default_backoff_is_capped_at_thirty_seconds():
    # The cap itself is exercised with small values above; these defaults are runconveyor's.
    assert inspect.signature(Supervisor).parameters["backoff_max"].default == 30.0


def _alive(process: psutil.Process) -> bool:
    """Running, and not a zombie (an orphan that init has not reaped yet has exited)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigterm_stops_each_child_once_then_kills_what_outlives_the_grace(tmp_path):
    # Given a supervisor process running a child that exits on SIGTERM (leaving its own child behind)
    # and a child that ignores SIGTERM (with a child of its own)
    grace = 2.0
    logs = {"polite": tmp_path / "polite.log", "stubborn": tmp_path / "stubborn.log"}
    children = [(name, [sys.executable, "-c", SIGNAL_RECORDER, str(log), name]) for name, log in logs.items()]
    output = tmp_path / "supervisor.log"
    with output.open("wb") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR, json.dumps(children), str(grace)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    processes: list[psutil.Process] = []
    try:
        wait_for(lambda: all(log.exists() and "ready" in log.read_text() for log in logs.values()), 20, 0.05)
        processes = psutil.Process(supervisor.pid).children(recursive=True)
        assert len(processes) == 4, processes  # two children, one grandchild each

        # When the supervisor gets SIGTERM
        sent_at = time.monotonic()
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(timeout=grace + 15)
        stopped_after = time.monotonic() - sent_at

        # Then each child got SIGTERM exactly once
        for name, log in logs.items():
            assert len(_events(log, "term")) == 1, (name, log.read_text())
        # the supervisor waited out the grace before killing the one that ignored it
        assert stopped_after >= grace
        assert "still running after" in output.read_text()
        # and no process is left: neither child nor grandchild
        assert code == 0, output.read_text()
        assert [p for p in processes if _alive(p)] == []
    finally:
        leftovers = []
        if supervisor.poll() is None:
            leftovers = psutil.Process(supervisor.pid).children(recursive=True)
            supervisor.kill()
            supervisor.wait(timeout=10)
        for process in [*processes, *leftovers]:
            if _alive(process):
                process.kill()


def test_pools_and_the_scheduler_run_the_projects_manage_py():
    # runconveyor's children start from the project directory, wherever the supervisor module lives
    for spec in (pool_spec(all_queues()[0], nice=0), scheduler_spec()):
        manage_py = Path(spec.argv[1])
        assert manage_py == ROOT / "manage.py" and manage_py.is_file()
        assert spec.cwd == ROOT
    assert web_spec().cwd == ROOT


def test_the_web_server_trusts_forwarded_headers_only_from_the_configured_proxies(monkeypatch):
    # Default: a proxy on the same host only
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    argv = web_spec().argv
    assert "--proxy-headers" in argv
    assert argv[argv.index("--forwarded-allow-ips") + 1] == "127.0.0.1"

    # An operator names the TLS proxy's addresses
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.5,10.0.1.0/24")
    argv = web_spec().argv
    assert argv[argv.index("--forwarded-allow-ips") + 1] == "10.0.0.5,10.0.1.0/24"
