"""Conveyor on four hosts, and one of them dies halfway: nothing is lost, nothing runs twice.

The hosts are namespaces on this machine (``tests/topology/hosts.py``):

- ``data``: PostgreSQL, Redis (with a password), an S3 server (moto) and an SMTP sink;
- ``web``: collectstatic (what the image build does), the release command, then ``runconveyor --role web``;
- ``a`` and ``b``: ``runconveyor --role workers --role scheduler``, one process per pool;
- ``ops``: the operator's machine, which the test acts from (the API, and reading the database to check).

Every Conveyor host runs in production mode with one shared ``SECRET_KEY`` and
its own var, media and temporary directories on a private tmpfs; documents,
thumbnails and exports pass between hosts only through the S3 server. The
commands are the ones the compose file runs (``tests/topology/commands.py``).

Halfway, with host A sending emails and running jobs, every process of host A
is SIGKILLed through its cgroup. Host B then finishes everything: each job
completes, each document has its text and thumbnails, the export downloads,
each recipient has their email (at most one twice per SMTP connection host A
had open), and each schedule fired exactly once per fire time across both
schedulers.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import requests

from tests.documents.pdfs import image_pdf
from tests.topology.commands import release_command, role_command
from tests.topology.hosts import PRIVATE_DIR, Network, Operator, wait_until

pytestmark = [pytest.mark.topology, pytest.mark.timeout(420)]

#: Debian's PostgreSQL server programs (the newest installed version).
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)).parent
#: The postgres user's programs start in a directory it may enter (the checkout may be a 0700
#: temporary directory: initdb then cannot find its own postgres).
POSTGRES_WD = Path("/")
PG_PORT, REDIS_PORT, S3_PORT, SMTP_PORT, WEB_PORT = 5432, 6379, 9000, 2525, 8000
BUCKET = "conveyor-topology"
NAMESPACE = "conveyor-topology"
QUEUES = ("pdf-processing", "email-sender", "csv-export", "thumbnails", "maintenance")
SCHEDULE_INTERVAL_S = 3
RECIPIENTS = 40
DOCUMENTS = [
    [["alpha", "conveyor", "topology"], ["second", "page", "alpha"], ["alpha", "third", "sheet"]],
    [["bravo", "worker", "hosts"], ["bravo", "survives", "crash"], ["bravo", "ending", "here"]],
    [["charlie", "storage", "bucket"], ["charlie", "final", "page"], ["charlie", "extra", "words"]],
    [["delta", "namespace", "private"], ["delta", "mount", "tmpfs"], ["delta", "cgroup", "killed"]],
]


def python(argv: list[str]) -> list[str]:
    """A command of commands.py with this virtualenv's python for ``python``."""
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


@pytest.fixture
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    logs = tmp_path_factory.mktemp("topology")
    logs.chmod(0o755)  # the data host's postgres user writes nothing here, but reads its way through
    net = Network(["data", "web", "a", "b", "ops"], logs)
    try:
        net.build()
        yield net
    finally:
        net.tear_down()
        print(f"\ntopology logs: {logs}")


class Deployment:
    """The hosts' environment, the data services, and the operator's view of them."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.data = net["data"].address
        self.web = net["web"].address
        self.pg_password = secrets.token_urlsafe(16)
        self.redis_password = secrets.token_urlsafe(16)
        self.admin_password = secrets.token_urlsafe(16)
        self.sink_file = net.logs / "smtp-sink.jsonl"
        self.operator = Operator(net["ops"])
        self.token = ""
        self.brokers: dict[str, str] = {}  # Dramatiq broker id (a job's worker_id) -> host name

    # -- environment ----------------------------------------------------------
    def conveyor_env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "HOME": str(PRIVATE_DIR),
            "CONVEYOR_ENV": "production",
            "SECRET_KEY": SHARED_SECRET_KEY,
            "ALLOWED_HOSTS": self.web,
            "METRICS_TOKEN": METRICS_TOKEN,
            "DATABASE_URL": f"postgres://conveyor:{self.pg_password}@{self.data}:{PG_PORT}/conveyor",
            "REDIS_URL": f"redis://:{self.redis_password}@{self.data}:{REDIS_PORT}/0",
            "DRAMATIQ_NAMESPACE": NAMESPACE,
            "CONVEYOR_VAR_DIR": str(PRIVATE_DIR / "var"),
            "MEDIA_ROOT": str(PRIVATE_DIR / "media"),
            "TMPDIR": str(PRIVATE_DIR / "tmp"),
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": f"http://{self.data}:{S3_PORT}",
            "AWS_ACCESS_KEY_ID": "topology",
            "AWS_SECRET_ACCESS_KEY": "topology-secret",
            "AWS_S3_REGION_NAME": "us-east-1",
            "EMAIL_HOST": self.data,
            "EMAIL_PORT": str(SMTP_PORT),
            # Slow enough that host A is mid-campaign when it dies: at most 8 emails in any 4 s window,
            # across both hosts (the limit counts per window: the variable's name says per minute
            # because the window is 60 s by default).
            "EMAIL_RATE_LIMIT_PER_MINUTE": "8",
            "EMAIL_RATE_LIMIT_WINDOW_S": "4",
            "EMAIL_BATCH_SIZE": "5",
            # A dead host's messages come back within seconds rather than a minute.
            "DRAMATIQ_HEARTBEAT_TIMEOUT_MS": "8000",
            "DRAMATIQ_HEARTBEAT_INTERVAL_MS": "1000",
            "DRAMATIQ_MAINTENANCE_INTERVAL_MS": "1000",
            "JOBS_RECONCILE_INTERVAL_S": "2",
            "JOBS_RECONCILE_GRACE_S": "5",
            "SCHEDULER_REFRESH_S": "2",
            "WORKER_SHUTDOWN_GRACE_S": "5",
            "WORKER_NICE": "0",
            "WEB_WORKERS": "1",
            "OMP_THREAD_LIMIT": "1",
            "DB_CONNECTION_BUDGET": "60",
            **{f"QUEUE_{queue.upper().replace('-', '_')}_PROCESSES": "1" for queue in QUEUES},
        }
        env.update(extra)
        return env

    # -- the data host ----------------------------------------------------------
    def start_data_services(self) -> None:
        host = self.net["data"]
        root = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", "PGPASS": self.pg_password}
        pg = PRIVATE_DIR / "pg"
        host.run(
            [
                "sh",
                "-c",
                f"set -e; mkdir -p {pg} {pg}-run; chown postgres: {pg} {pg}-run; "
                f'printf %s "$PGPASS" > {pg}-run/pw; chown postgres: {pg}-run/pw; '
                f"runuser -u postgres -- {PG_BIN}/initdb -D {pg} -U conveyor --auth-local=trust "
                f"--auth-host=scram-sha-256 --pwfile={pg}-run/pw -E UTF8 >/dev/null; "
                f"echo 'host all all {self.net.subnet}.0/24 scram-sha-256' >> {pg}/pg_hba.conf",
            ],
            root,
            wd=POSTGRES_WD,
        )
        host.spawn(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "postgres"),
                "-D",
                str(pg),
                "-c",
                f"listen_addresses={self.data}",
                "-c",
                f"port={PG_PORT}",
                "-c",
                f"unix_socket_directories={pg}-run",
                "-c",
                "max_connections=300",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            root,
            "postgres",
            wd=POSTGRES_WD,
        )
        host.spawn(
            [
                "redis-server",
                "--bind",
                self.data,
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                self.redis_password,
            ],
            root,
            "redis",
        )
        host.spawn([str(Path(sys.executable).parent / "moto_server"), "-H", self.data, "-p", str(S3_PORT)], root, "s3")
        host.spawn(
            [sys.executable, "-m", "tests.topology.smtp_sink", self.data, str(SMTP_PORT), str(self.sink_file)],
            root,
            "smtp",
        )
        wait_until(
            lambda: host.run([str(PG_BIN / "pg_isready"), "-h", f"{pg}-run", "-U", "conveyor"], root) is not None,
            60,
            "PostgreSQL on the data host",
            interval=0.5,
        )
        host.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "createdb"),
                "-h",
                f"{pg}-run",
                "-U",
                "conveyor",
                "conveyor",
            ],
            root,
            wd=POSTGRES_WD,
        )
        self.operator.call(wait_until, lambda: self.redis().ping(), 30, "Redis on the data host")
        self.operator.call(wait_until, self._make_bucket, 30, "the S3 server on the data host")
        self.operator.call(wait_until, lambda: self.sink_file.exists() or self._smtp_answers(), 30, "the SMTP sink")

    def _make_bucket(self) -> bool:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=f"http://{self.data}:{S3_PORT}",
            aws_access_key_id="topology",
            aws_secret_access_key="topology-secret",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        return True

    def _smtp_answers(self) -> bool:
        import smtplib

        with smtplib.SMTP(self.data, SMTP_PORT, timeout=2) as smtp:
            return smtp.noop()[0] == 250

    # -- the operator's connections (call inside the operator thread) --------------
    def redis(self) -> redis.Redis:
        return redis.Redis(
            host=self.data, port=REDIS_PORT, password=self.redis_password, socket_timeout=5, decode_responses=True
        )

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(
            host=self.data,
            port=PG_PORT,
            user="conveyor",
            password=self.pg_password,
            dbname="conveyor",
            connect_timeout=5,
        ) as conn:
            return list(conn.execute(query, params).fetchall())

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        # The operator's machine is the TLS proxy in front of the web host: uvicorn trusts its
        # X-Forwarded-Proto (FORWARDED_ALLOW_IPS), so production's SSL redirect lets the request in.
        headers = {"X-Forwarded-Proto": "https", **kwargs.pop("headers", {})}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        return requests.request(method, f"http://{self.web}:{WEB_PORT}{path}", headers=headers, timeout=30, **kwargs)

    def observe_workers(self) -> dict[str, str]:
        """Remember which host each live Dramatiq broker runs on (their presence entries in Redis)."""
        for broker_id, raw in self.redis().hgetall(f"{NAMESPACE}:__workers__").items():
            self.brokers[str(broker_id)] = json.loads(raw)["host"]
        return self.brokers

    def sink(self) -> list[dict[str, Any]]:
        if not self.sink_file.exists():
            return []
        return [json.loads(line) for line in self.sink_file.read_text().splitlines() if line.strip()]


SHARED_SECRET_KEY = secrets.token_urlsafe(64)
METRICS_TOKEN = secrets.token_urlsafe(32)

# Run on the web host after the release: recipients, and two schedules firing every few seconds.
SETUP = f"""
import json
from django.contrib.auth.models import User
from jobs.models.schedule import Schedule
from jobs.ops.scheduling.firing import validate_schedule
users = [User(username=f"reader{{n}}", email=f"reader{{n}}@example.test") for n in range({RECIPIENTS})]
User.objects.bulk_create(users)
for name, job_type in (("topology-cleanup", "cleanup"), ("topology-thumbnail-maintenance", "thumbnail-maintenance")):
    schedule = Schedule(name=name, interval_seconds={SCHEDULE_INTERVAL_S}, job_type=job_type, payload={{}})
    validate_schedule(schedule)
    schedule.save()
print(json.dumps(sorted(User.objects.filter(username__startswith="reader").values_list("id", flat=True))))
"""


def test_a_worker_host_killed_halfway_loses_nothing_and_runs_nothing_twice(network: Network, tmp_path: Path) -> None:
    began = time.monotonic()
    deploy = Deployment(network)
    op = deploy.operator
    try:
        deploy.start_data_services()

        # The web host: what the image build does, the release, then the web role.
        web = network["web"]
        web_env = deploy.conveyor_env(
            HOST="0.0.0.0", PORT=str(WEB_PORT), FORWARDED_ALLOW_IPS=network["ops"].address,
            ADMIN_USERNAME="operator", ADMIN_PASSWORD=deploy.admin_password,
        )  # fmt: skip
        web.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], web_env)
        web.run(python(release_command()), web_env, timeout=180)
        recipients = json.loads(
            web.run([sys.executable, "manage.py", "shell", "-c", SETUP], web_env).strip().splitlines()[-1]
        )
        web.spawn(python(role_command(["web"])), web_env, "runconveyor")

        for name in ("a", "b"):
            network[name].spawn(python(role_command(["workers", "scheduler"])), deploy.conveyor_env(), "runconveyor")

        def every_pool_up() -> bool:
            hosts = Counter(deploy.observe_workers().values())
            return hosts["a"] >= len(QUEUES) and hosts["b"] >= len(QUEUES)

        op.call(wait_until, every_pool_up, 120, "every pool of hosts a and b to announce itself", 0.5)
        op.call(wait_until, lambda: deploy.api("GET", "/workers/health").status_code == 200, 60, "the web host")
        setup_s = time.monotonic() - began

        # -- the work, through the web host's API -------------------------------------------------------
        deploy.token = op.call(
            deploy.api, "POST", "/api/auth/token", data={"username": "operator", "password": deploy.admin_password}
        ).json()["token"]
        jobs: dict[str, str] = {}
        documents: list[str] = []
        for index, pages in enumerate(DOCUMENTS):
            pdf = image_pdf(tmp_path / f"doc{index}.pdf", pages)
            with pdf.open("rb") as handle:
                response = op.call(
                    deploy.api, "POST", "/api/documents", files={"file": (pdf.name, handle, "application/pdf")}
                )
            assert response.status_code == 201, response.text
            documents.append(response.json()["id"])
        template = op.call(
            deploy.api, "POST", "/api/email-templates",
            json={"name": "topology", "subject": "Hi {{ recipient.username }}", "body_text": "Documents ready."},
        )  # fmt: skip
        assert template.status_code == 201, template.text
        requests_to_start = [
            ("email", "/api/jobs/email-batch", {"user_ids": recipients, "template_id": template.json()["id"]}),
            *[(f"ocr-{n}", "/api/jobs/pdf-ocr", {"file_id": doc}) for n, doc in enumerate(documents)],
            ("thumbnails", "/api/jobs/thumbnails", {"document_ids": documents, "sizes": [64, 128]}),
        ]
        for key, path, body in requests_to_start:
            response = op.call(deploy.api, "POST", path, json=body)
            assert response.status_code == 202, f"{path}: {response.status_code} {response.text}"
            jobs[key] = response.json()["job_id"]

        # -- halfway: host A is sending emails and running jobs; kill every process it has -----------------
        def host_a_busy() -> dict[str, Any] | None:
            deploy.observe_workers()
            a_brokers = [broker for broker, host in deploy.brokers.items() if host == "a"]
            running = deploy.sql(
                "SELECT type, queue FROM jobs_job WHERE status = 'active' AND worker_id = ANY(%s)", a_brokers
            )
            a_emails = [m for m in deploy.sink() if m["peer"][0] == network["a"].address]
            ocr_running = "tesseract" in network["a"].programs()  # in an isolation child's process group
            # Mid-campaign: host A has sent some of it and the campaign is not over. (Its email jobs are
            # "active" only in bursts: between windows of the rate limit they wait rescheduled.)
            campaign_open = deploy.sql(
                "SELECT 1 FROM jobs_job WHERE id = %s AND status NOT IN ('completed', 'failed', 'cancelled')",
                jobs["email"],
            )
            mid_campaign = bool(a_emails) and bool(campaign_open)
            # Best: mid-campaign and mid-OCR at once. That overlap is a matter of timing, so after a few
            # seconds mid-campaign alone, or any job in progress on host A, will do (the checks below hold
            # either way). Not much later: on a quiet machine the campaign (~20 s at 8 per 4 s) and the
            # OCR are over within ~30 s, and then host A runs only the 3-second schedules' short jobs.
            if (mid_campaign and ocr_running) or ((mid_campaign or running) and time.monotonic() > settle_by):
                return {
                    "running": running,
                    "emails_sent": len(a_emails),
                    "mid_campaign": mid_campaign,
                    "tesseract": ocr_running,
                }
            return None

        settle_by = time.monotonic() + 8

        at_kill = op.call(wait_until, host_a_busy, 150, "host A to be mid-campaign or running a job", 0.2)
        kill_at = datetime.now(UTC)
        a_programs = Counter(network["a"].programs())
        network["a"].kill()
        print(f"\nkilled host A ({sum(a_programs.values())} processes: {dict(a_programs)}) while it ran "
              f"{at_kill['running']}, after it sent {at_kill['emails_sent']} emails, "
              f"mid-campaign: {at_kill['mid_campaign']}, tesseract running: {at_kill['tesseract']}")  # fmt: skip
        assert not network["a"].pids()

        # An export after the kill: host B alone takes it.
        response = op.call(deploy.api, "POST", "/api/jobs/csv-export", json={"query_params": {"dataset": "documents"}})
        assert response.status_code == 202, response.text
        jobs["export"] = response.json()["job_id"]

        # -- host B finishes everything ---------------------------------------------------------------------
        def settled(job_id: str) -> dict[str, Any] | None:
            body = deploy.api("GET", f"/api/jobs/{job_id}").json()
            return body if body["status"] in ("completed", "failed", "cancelled") else None

        finished = {key: op.call(wait_until, lambda j=job_id: settled(j), 150, f"job {key} to finish", 0.5)
                    for key, job_id in jobs.items()}  # fmt: skip
        for key, body in finished.items():
            assert body["status"] == "completed", f"{key}: {body}"
        # The schedules keep firing on host B for a while after the kill.
        op.call(wait_until, lambda: datetime.now(UTC) > kill_at + timedelta(seconds=4 * SCHEDULE_INTERVAL_S), 30, "")
        ended = datetime.now(UTC)
        time.sleep(SCHEDULE_INTERVAL_S)  # let the last fires' jobs finish

        # -- nothing is lost ------------------------------------------------------------------------------------
        unfinished = op.call(
            deploy.sql,
            "SELECT j.type, j.status, j.created_at FROM jobs_job j LEFT JOIN jobs_schedulefire f ON f.job_id = j.id "
            "WHERE j.status <> 'completed' AND (f.id IS NULL OR j.created_at < %s)",
            ended - timedelta(seconds=SCHEDULE_INTERVAL_S),
        )
        assert unfinished == [], f"jobs not completed: {unfinished}"
        for doc in documents:
            body = op.call(deploy.api, "GET", f"/api/documents/{doc}").json()
            assert body["status"] == "ready", body
            # The sizes asked for (the thumbnail-maintenance schedule adds the default sizes).
            assert {"64", "128"} <= set(body["thumbnails"]), body
            text = op.call(deploy.api, "GET", f"/api/documents/{doc}/text").text.lower()
            words = {word for page in DOCUMENTS[documents.index(doc)] for word in page}
            assert words <= set(text.split()), f"document {doc}: OCR text {text!r} misses some of {sorted(words)}"
            thumbnail = op.call(deploy.api, "GET", f"/api/documents/{doc}/thumbnails/64")
            assert thumbnail.status_code == 200 and thumbnail.content[:8] == b"\x89PNG\r\n\x1a\n", thumbnail.status_code
        export_id = finished["export"]["arguments"]["export_id"]
        download = op.call(deploy.api, "GET", f"/api/exports/{export_id}/download")
        assert download.status_code == 200, download.text
        rows = list(csv.DictReader(io.StringIO(download.content.decode())))
        assert sorted(row["id"] for row in rows) == sorted(documents)

        # -- each recipient has their email; duplicates only from host A's open connections ---------------
        messages = deploy.sink()
        received = Counter(rcpt for m in messages for rcpt in m["rcpt"])
        expected = {f"reader{n}@example.test" for n in range(RECIPIENTS)}
        assert set(received) == expected, f"missing: {sorted(expected - set(received))}"
        twice = {rcpt: count for rcpt, count in received.items() if count > 1}
        a_connections = {tuple(m["peer"]) for m in messages if m["peer"][0] == network["a"].address}
        assert all(count == 2 for count in twice.values()), twice
        duplicated_by_connection: Counter[tuple[str, int]] = Counter()
        for rcpt in twice:
            first = min((m for m in messages if rcpt in m["rcpt"]), key=lambda m: m["at"])
            assert first["peer"][0] == network["a"].address, f"{rcpt} was sent twice, first by {first['peer']}"
            duplicated_by_connection[tuple(first["peer"])] += 1
        assert all(count <= 1 for count in duplicated_by_connection.values()), duplicated_by_connection
        campaign = op.call(deploy.sql, "SELECT status FROM campaigns_campaign")
        assert campaign == [("completed",)], campaign

        # -- each schedule fired exactly once per fire time, across both schedulers -----------------------
        fires = op.call(
            deploy.sql,
            "SELECT s.name, f.fire_time, f.fired_by, f.outcome, "
            "(SELECT count(*) FROM jobs_job j WHERE j.id = f.job_id) FROM jobs_schedulefire f "
            "JOIN jobs_schedule s ON s.id = f.schedule_id WHERE s.name LIKE 'topology-%%' ORDER BY s.name, f.fire_time",
        )
        fired_by_host: dict[str, Counter[str]] = defaultdict(Counter)
        for name in ("topology-cleanup", "topology-thumbnail-maintenance"):
            times = [fire_time for schedule, fire_time, *_ in fires if schedule == name]
            gaps = {(later - earlier).total_seconds() for earlier, later in zip(times, times[1:], strict=False)}
            assert gaps == {float(SCHEDULE_INTERVAL_S)}, f"{name}: fire times {times}"
            assert times and times[0] < kill_at and times[-1] >= ended - timedelta(seconds=2 * SCHEDULE_INTERVAL_S), (
                f"{name} did not fire before the kill and on through the run: {times[:1]}..{times[-1:]}"
            )
        for _, fire_time, fired_by, outcome, job_count in fires:
            host = fired_by.split(":")[0]
            fired_by_host[host]["after kill" if fire_time > kill_at + timedelta(seconds=1) else "before kill"] += 1
            assert job_count == (1 if outcome == "enqueued" else 0), (fire_time, fired_by, outcome, job_count)
        assert fired_by_host["a"]["after kill"] == 0 and fired_by_host["b"]["after kill"] > 0, fired_by_host
        enqueued = sum(1 for *_, outcome, _ in fires if outcome == "enqueued")
        scheduled_jobs = op.call(
            deploy.sql,
            "SELECT count(*) FROM jobs_job j JOIN jobs_schedulefire f ON f.job_id = j.id "
            "JOIN jobs_schedule s ON s.id = f.schedule_id WHERE s.name LIKE 'topology-%%'",
        )[0][0]
        assert scheduled_jobs == enqueued

        # -- who ran what -------------------------------------------------------------------------------------
        attempts = op.call(deploy.sql, "SELECT worker_id, outcome FROM jobs_jobattempt")
        completed = op.call(deploy.sql, "SELECT worker_id, type FROM jobs_job WHERE status = 'completed'")
        per_host: dict[str, Counter[str]] = defaultdict(Counter)
        for worker, job_type in completed:
            if worker in ("children", "finalizing"):  # jobs.core.enums.RunHolder: a fan-out parent
                per_host["(none)"][f"fan-out parents finished by their children ({job_type})"] += 1
            else:
                per_host[deploy.brokers.get(worker, "?")]["jobs completed"] += 1
        for worker, outcome in attempts:
            per_host[deploy.brokers.get(worker, "?")][f"attempts {outcome}"] += 1
        for m in messages:
            per_host["a" if m["peer"][0] == network["a"].address else "b"]["emails sent"] += 1
        for host, counts in fired_by_host.items():
            per_host[host].update({f"schedule fires {when}": n for when, n in counts.items()})
        print(f"\nset-up {setup_s:.0f} s, whole test {time.monotonic() - began:.0f} s")
        for host in sorted(per_host):
            print(f"host {host}: " + ", ".join(f"{k} {v}" for k, v in sorted(per_host[host].items())))
        print(f"recipients sent twice: {len(twice)}; host A's SMTP connections: {len(a_connections)}")
        assert per_host["a"]["jobs completed"] > 0 and per_host["b"]["jobs completed"] > 0, per_host
        assert "?" not in per_host, f"jobs completed by a worker of no host: {per_host['?']}"
    except BaseException:
        for name in ("web", "a", "b"):
            print(f"\n--- host {name} runconveyor (tail) ---\n{network[name].log('runconveyor')}")
        raise
    finally:
        op.close()
