"""A real S3-compatible server for tests: moto's standalone ``moto_server`` in a subprocess.

It speaks the S3 HTTP API on a free loopback port, so django-storages and
boto3 talk to it exactly as they would to AWS or MinIO. ``env(bucket)`` is
the environment a worker or web process needs to use a bucket on it, with
the variable names the settings read (``config/file_storage.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.web_server import _accepts, free_port
from tests.workers import ROOT, terminate, wait_for

ACCESS_KEY = "conveyor-test"
SECRET_KEY = "conveyor-test-secret"
REGION = "us-east-1"


class S3Server:
    """``moto_server -H 127.0.0.1 -p <free port>``; ``endpoint`` addresses it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path = ROOT / "var" / f"test-s3-{os.getpid()}-{self.port}.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        executable = Path(sys.executable).parent / "moto_server"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(executable), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: self._running_or_fail() and _accepts(self.port), 30, 0.1, "moto_server to listen")
        return self

    def _running_or_fail(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"moto_server exited with {self.proc.returncode}:\n{self.log()}")
        return True

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def create_bucket(self) -> str:
        """A new, empty bucket of this test's own."""
        name = f"conveyor-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> dict[str, int]:
        """Every object in the bucket: key -> size."""
        found: dict[str, int] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", ()):
                found[entry["Key"]] = entry["Size"]
        return found

    def read(self, bucket: str, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def env(self, bucket: str) -> dict[str, str]:
        """The environment that points a process's default storage at ``bucket`` on this server."""
        return {
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_S3_REGION_NAME": REGION,
        }

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout=10)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass(frozen=True)
class S3Bucket:
    """A test's bucket: its name, the environment that selects it, and the server holding it."""

    name: str
    env: dict[str, str]
    server: S3Server

    def objects(self) -> dict[str, int]:
        return self.server.objects(self.name)

    def read(self, key: str) -> bytes:
        return self.server.read(self.name, key)
