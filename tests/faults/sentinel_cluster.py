"""A private Redis Sentinel deployment for tests: a primary, a replica and three sentinels.

Every process is a ``redis-server`` on a spare loopback port, with its
configuration and data in a temporary directory, so a test may kill the
primary without touching the machine's own Redis. The sentinels call the
primary down after ``DOWN_AFTER_MS`` and fail over to the replica.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis
from redis.sentinel import Sentinel

from tests.services import free_port

REDIS_SERVER = "/usr/bin/redis-server"
MASTER_NAME = "conveyor"
#: How long the primary may be silent before a sentinel calls it down.
DOWN_AFTER_MS = 1000
#: Sentinels agreeing the primary is down before a failover starts (of three).
QUORUM = 2
FAILOVER_TIMEOUT_MS = 3000


class SentinelCluster:
    """A primary, a replica and three sentinels on loopback; ``env`` configures Conveyor to use them."""

    def __init__(self, db: int = 0) -> None:
        self.db = db
        self.dir = Path(tempfile.mkdtemp(prefix="conveyor-sentinel-"))
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    # -- addresses ------------------------------------------------------
    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.sentinel_ports]

    @property
    def primary_url(self) -> str:
        """The first primary's own address (what a deployment without Sentinel would use)."""
        return f"redis://127.0.0.1:{self.primary_port}/{self.db}"

    def env(self) -> dict[str, str]:
        """The environment that points Conveyor's processes at this deployment.

        ``REDIS_URL`` names the first primary: with Sentinel support only its
        database number counts; a process without it would stay on that host.
        """
        return {
            "REDIS_URL": self.primary_url,
            "REDIS_SENTINELS": ",".join(f"{host}:{port}" for host, port in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
        }

    def client(self) -> redis.Redis:
        """A client of the current primary, found through the sentinels (this test process's own)."""
        return Sentinel(self.sentinels, sentinel_kwargs={"socket_timeout": 1}).master_for(
            MASTER_NAME, db=self.db, socket_connect_timeout=2
        )

    def master_port(self) -> int | None:
        """The primary's port as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            try:
                address = redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.RedisError:
                continue
            if isinstance(address, tuple | list):
                return int(address[1])
        return None

    # -- life -----------------------------------------------------------
    def start(self) -> SentinelCluster:
        try:
            self._server(self.primary_port)
            self._server(self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
            self._wait(self._replica_in_sync, "the replica to sync with the primary")
            for port in self.sentinel_ports:
                self._sentinel(port)
            self._wait(self._sentinels_agree, "the sentinels to know the primary, the replica and each other")
        except BaseException:
            self.cleanup()
            raise
        return self

    def kill_primary(self) -> None:
        """kill -9 the primary (whichever server that is now)."""
        port = self.master_port()
        assert port is not None, "no sentinel names a primary"
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def cleanup(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- inside ---------------------------------------------------------
    def _server(self, port: int, *args: str) -> None:
        data = self.dir / str(port)
        data.mkdir()
        self.procs[port] = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(data), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _sentinel(self, port: int) -> None:
        conf = self.dir / f"sentinel-{port}.conf"  # a sentinel rewrites its file: one each, writable
        conf.write_text(
            "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    f"dir {self.dir}",
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary_port} {QUORUM}",
                    f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {MASTER_NAME} 1",
                    "",
                ]
            )
        )
        self.procs[port] = subprocess.Popen(
            [REDIS_SERVER, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _replica_in_sync(self) -> bool:
        try:
            info = redis.Redis(port=self.replica_port, socket_timeout=1).info("replication")
        except redis.RedisError:
            return False
        return info.get("master_link_status") == "up"

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            try:
                state = redis.Redis(port=port, socket_timeout=1).sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            if not isinstance(state, dict):
                return False
            if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < len(self.sentinel_ports) - 1:
                return False
        return True

    def _wait(self, condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            for port, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {port} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.1)
