"""Hosts on one machine: a network namespace, a PID, mount and UTS namespace, and a cgroup each.

A :class:`Network` owns a private subnet (``10.<a>.<b>.0/24``, picked at
random) and a bridge inside the first host's network namespace; every other
host gets a veth pair into that bridge. Nothing is added to the machine's own
network namespace, so traffic only passes between the test's namespaces.

A :class:`Host` boots a tiny init process in its namespaces: its own hostname,
its own ``/proc``, and a tmpfs over :data:`PRIVATE_DIR`, the path every host
uses for its var directory, ``TMPDIR`` and media. Each host sees only its own
files there, so nothing can pass between hosts through a shared path. Commands
run inside with ``nsenter``; every process of a host lives in its cgroup, and
:meth:`Host.kill` ends them all at once with ``cgroup.kill`` (SIGKILL, process
groups and sessions included).

The :class:`Operator` is a thread that joins a host's network namespace
(``setns`` is per thread for network namespaces): the test talks to the web
host's API, the database and Redis from there, as an operator's machine would.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import random
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent.parent
#: Where each host mounts its private tmpfs (the same path on every host, a different file system).
PRIVATE_DIR = Path("/run/conveyor-topology-host")
CGROUP_ROOT = Path("/sys/fs/cgroup/unified")
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

T = TypeVar("T")

# The host's init: reaps the orphans re-parented to it (PID 1 of the namespace) until it is killed.
_INIT = """
import os, sys, time
print("ready", flush=True)
sys.stdout.close()
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.2)
"""

# Runs as the unshared child: hostname, private tmpfs, then the init above.
_BOOT = """
set -e
hostname "$1"
mkdir -p "$2"
mount -t tmpfs -o mode=0755,size=1g "conveyor-$1" "$2"
mkdir -p "$2/var" "$2/media" "$2/tmp"
chmod 1777 "$2/tmp"
exec "$3" -c "$4"
"""


class TopologyError(AssertionError):
    """The machine cannot build the hosts (no root, no namespaces, no cgroup v2): the test fails."""


def _run(argv: Sequence[str], timeout: float = 30) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise TopologyError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:  # the service is not up yet: try again until the deadline
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f": {last_error}" if last_error else "")
    )


class Host:
    """One machine of the topology: namespaces, a cgroup, a private tmpfs, a log directory."""

    def __init__(self, network: Network, name: str, address: str) -> None:
        self.network = network
        self.name = name
        self.address = address
        self.netns = f"{network.prefix}-{name}"
        self.cgroup = network.cgroup / name
        self.logs = network.logs / name
        self._init: subprocess.Popen[str] | None = None
        self.init_pid = 0
        self.processes: list[subprocess.Popen[bytes]] = []

    # -- life -----------------------------------------------------------------
    def boot(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cgroup.mkdir()
        self._init = subprocess.Popen(
            [
                *self._in_cgroup(),
                "ip",
                "netns",
                "exec",
                self.netns,
                "unshare",
                "--pid",
                "--fork",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--mount-proc",
                "--",
                "sh",
                "-c",
                _BOOT,
                "boot",
                self.name,
                str(PRIVATE_DIR),
                sys.executable,
                _INIT,
            ],
            stdout=subprocess.PIPE,
            stderr=open(self.logs / "init.log", "wb"),  # noqa: SIM115 - the child holds it
            text=True,
        )
        assert self._init.stdout is not None
        line = self._init.stdout.readline().strip()
        if line != "ready":
            raise TopologyError(f"host {self.name} did not boot: {(self.logs / 'init.log').read_text()}")
        self.init_pid = self._namespace_init_pid()

    def _in_cgroup(self) -> list[str]:
        # A shell that moves itself into the host's cgroup, then execs the command: it and all it starts
        # belong to the host (no preexec_fn: the test has threads).
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.cgroup)]

    def _namespace_init_pid(self) -> int:
        # sh execs `ip netns exec`, which execs unshare (same pid); unshare --fork's one child is PID 1 inside.
        assert self._init is not None
        children = Path(f"/proc/{self._init.pid}/task/{self._init.pid}/children").read_text().split()
        if len(children) != 1:
            raise TopologyError(f"host {self.name}: expected one namespace init, found {children}")
        return int(children[0])

    def pids(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.cgroup / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def programs(self) -> list[str]:
        """The program name of each process of the host (``comm``), e.g. to see what a kill hits."""
        names = []
        for pid in self.pids():
            try:
                names.append(Path(f"/proc/{pid}/comm").read_text().strip())
            except OSError:  # exited meanwhile
                pass
        return names

    def kill(self) -> None:
        """SIGKILL every process of the host at once (``cgroup.kill``), then wait until none is left."""
        if not self.cgroup.exists():
            return
        (self.cgroup / "cgroup.kill").write_text("1")
        wait_until(lambda: not self.pids(), 20, f"every process of host {self.name} to die")
        leaders: list[subprocess.Popen[Any]] = [*self.processes, *([self._init] if self._init else [])]
        for proc in leaders:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def remove(self) -> None:
        self.kill()
        _remove_cgroup(self.cgroup)

    # -- commands -------------------------------------------------------------
    def _argv(self, argv: Sequence[str], wd: Path = ROOT) -> list[str]:
        return [
            *self._in_cgroup(),
            "nsenter",
            "--target",
            str(self.init_pid),
            "--net",
            "--mount",
            "--uts",
            "--pid",
            f"--wd={wd}",
            "--",
            *argv,
        ]

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], log_name: str, wd: Path = ROOT
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process on the host in ``wd``; its output goes to ``<logs>/<log_name>.log``."""
        with open(self.logs / f"{log_name}.log", "ab") as log:
            proc = subprocess.Popen(
                self._argv(argv, wd),
                env=dict(env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.processes.append(proc)
        return proc

    def run(self, argv: Sequence[str], env: Mapping[str, str], timeout: float = 120, wd: Path = ROOT) -> str:
        """Run a command on the host to completion in ``wd``; its output, or an AssertionError with it."""
        result = subprocess.run(
            self._argv(argv, wd),
            env=dict(env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"on host {self.name}: {' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def log(self, log_name: str, tail: int = 4000) -> str:
        path = self.logs / f"{log_name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""


class Network:
    """Namespaces named ``cvt<random>-<host>``, a /24 of 10.0.0.0/8, a bridge in the first host."""

    def __init__(self, host_names: Sequence[str], logs: Path) -> None:
        self.prefix = "cvt" + secrets.token_hex(3)
        self.subnet = f"10.{random.randint(64, 250)}.{random.randint(0, 255)}"
        self.cgroup = CGROUP_ROOT / f"conveyor-topology-{self.prefix}"
        self.logs = logs
        self.hosts = {name: Host(self, name, f"{self.subnet}.{index + 1}") for index, name in enumerate(host_names)}
        self._namespaces: list[str] = []

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def build(self) -> None:
        self._check_machine()
        self.cgroup.mkdir()
        hub, *others = self.hosts.values()
        for host in self.hosts.values():
            _run(["ip", "netns", "add", host.netns])
            self._namespaces.append(host.netns)
            _run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
        _run(["ip", "-n", hub.netns, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", hub.netns, "addr", "add", f"{hub.address}/24", "dev", "br0"])
        _run(["ip", "-n", hub.netns, "link", "set", "br0", "up"])
        for index, host in enumerate(others):
            port = f"port{index}"
            _run(
                [
                    "ip",
                    "-n",
                    hub.netns,
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    host.netns,
                ]
            )
            _run(["ip", "-n", hub.netns, "link", "set", port, "master", "br0", "up"])
            _run(["ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0"])
            _run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
        for host in self.hosts.values():
            host.boot()

    def _check_machine(self) -> None:
        if os.geteuid() != 0:
            raise TopologyError("the topology test needs root (network namespaces, cgroups, mounts)")
        for tool in ("ip", "unshare", "nsenter", "runuser"):
            if shutil.which(tool) is None:
                raise TopologyError(f"the topology test needs `{tool}` (util-linux, iproute2)")
        if not (CGROUP_ROOT / "cgroup.procs").exists():
            raise TopologyError(f"no cgroup v2 hierarchy at {CGROUP_ROOT}: cannot kill a host as a whole")

    def tear_down(self) -> None:
        for host in self.hosts.values():
            try:
                host.remove()
            except Exception as exc:  # keep tearing down the rest
                print(f"topology: could not remove host {host.name}: {exc}", file=sys.stderr)
        for netns in self._namespaces:
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True, timeout=30)
        _remove_cgroup(self.cgroup)


def _remove_cgroup(path: Path) -> None:
    # A killed process leaves its cgroup a moment after cgroup.procs reads empty (EBUSY until then).
    def removed() -> bool:
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        return not path.exists()

    wait_until(removed, 30, f"cgroup {path} to be removable")


class Operator:
    """A thread inside one host's network namespace that runs the test's calls: ``operator.call(fn, ...)``."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, initializer=self._join)

    def _join(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(NETNS_DIR / self.host.netns, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.host.netns} failed")
        finally:
            os.close(fd)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
