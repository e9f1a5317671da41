"""Throughput of no-op jobs: Celery and RQ versus Conveyor, same Redis, same run.

    .venv/bin/python bench/peers.py [--jobs 20000] [--skip celery-prefork,celery-threads,rq-simple,rq-fork,conveyor]

Every side is measured the same way as ``bench/throughput.py`` measures plain
Dramatiq: the queue is filled first (that rate is the enqueue figure), then the
workers start, and processing runs from the first job taken to the queue empty
(Conveyor: first job started to last job finished, from its Job rows).

* Celery 5.7, prefork: one worker, ``-P prefork -c 2`` (2 processes);
* Celery 5.7, threads: two workers, ``-P threads -c 8`` each (2 x 8, like Conveyor);
  both with Celery's defaults otherwise (prefetch multiplier 4, acks on receipt);
* RQ 3.0: ``rq worker-pool -n 2`` (2 workers), with ``SimpleWorker`` (runs jobs in the
  worker process) and with RQ's default ``Worker``, which forks a work horse per job
  (at most 1,000 jobs for that one: it managed 4-9 jobs/s per worker here);
* Conveyor: canary jobs on 2 processes x 8 threads holding 16 messages each (Dramatiq's
  default prefetch), via ``bench.throughput.bench_conveyor``.

Celery uses Redis database 12, RQ database 13, Conveyor database 14 (the
``conveyor-bench`` namespace): the machine's Redis, separate keys.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/email.py would shadow the standard library

from bench.processes import start_logged, stop, stop_children_at_exit  # noqa: E402 - needs the project root on the path

CELERY_URL = os.environ.setdefault("BENCH_CELERY_URL", "redis://127.0.0.1:6379/12")
RQ_URL = os.environ.get("BENCH_RQ_URL", "redis://127.0.0.1:6379/13")
DEADLINE_S = 900
# result_ttl=0 (keep no result) made RQ 3.0.0 raise InvalidJobOperation after some jobs: keep them a minute.
RQ_RESULT_TTL_S = 60
# RQ's default worker forks a work horse per job (~10 jobs/s per worker here): fewer jobs keep the run short.
RQ_FORK_MAX_JOBS = 1000


def _drain(label: str, jobs: int, waiting: Callable[[], int], procs: list, log: Path) -> float:
    """Jobs per second from the first job taken until none is waiting."""
    deadline = time.monotonic() + DEADLINE_S
    while waiting() >= jobs:
        if any(proc.poll() is not None for proc in procs) or time.monotonic() > deadline:
            raise SystemExit(f"the {label} workers did not start; see {log}")
        time.sleep(0.001)
    first = time.monotonic()
    while waiting() > 0:
        if any(proc.poll() is not None for proc in procs) or time.monotonic() > deadline:
            raise SystemExit(f"the {label} workers stopped or stalled; see {log}")
        time.sleep(0.005)
    return jobs / (time.monotonic() - first)


def bench_celery(jobs: int, pool: str) -> tuple[float, float]:
    from bench.peer_apps import CELERY_QUEUE, celery_app, celery_noop

    client = celery_app.connection_for_write().default_channel.client
    client.flushdb()
    started = time.monotonic()
    with celery_app.producer_or_acquire() as producer:
        for _ in range(jobs):
            celery_noop.apply_async(producer=producer)
    enqueue_rate = jobs / (time.monotonic() - started)
    if pool == "prefork":
        workers = [("1", ["-P", "prefork", "-c", "2"])]
    else:
        workers = [(str(n), ["-P", "threads", "-c", "8"]) for n in (1, 2)]
    log = ROOT / "var" / f"bench-celery-{pool}.log"
    procs = []
    try:
        for name, options in workers:
            procs.append(
                start_logged(
                    [
                        sys.executable, "-m", "celery", "-A", "bench.peer_apps", "worker", "-Q", CELERY_QUEUE,
                        "-n", f"bench{name}@%h", "-l", "warning", "--without-gossip", "--without-mingle", *options,
                    ],
                    log,
                )
            )  # fmt: skip
        rate = _drain(f"Celery {pool}", jobs, lambda: int(client.llen(CELERY_QUEUE)), procs, log)
    finally:
        for proc in procs:
            stop(proc)
    client.flushdb()
    return enqueue_rate, rate


def bench_rq(jobs: int, worker_class: str) -> tuple[float, float]:
    import redis
    from rq import Queue

    from bench.peer_apps import rq_noop

    connection = redis.Redis.from_url(RQ_URL)
    connection.flushdb()
    queue = Queue("bench-rq", connection=connection)
    started = time.monotonic()
    for first in range(0, jobs, 1000):
        batch = [Queue.prepare_data(rq_noop, result_ttl=RQ_RESULT_TTL_S) for _ in range(min(1000, jobs - first))]
        with connection.pipeline() as pipe:
            queue.enqueue_many(batch, pipeline=pipe)
            pipe.execute()
    enqueue_rate = jobs / (time.monotonic() - started)
    log = ROOT / "var" / "bench-rq.log"
    proc = start_logged(
        [str(Path(sys.executable).parent / "rq"), "worker-pool", "-n", "2", "-w", worker_class, "-u", RQ_URL]
        + ["--quiet", "bench-rq"],
        log,
    )
    try:
        rate = _drain("RQ", jobs, lambda: queue.count, [proc], log)
    finally:
        stop(proc)
    connection.flushdb()
    return enqueue_rate, rate


def bench_conveyor(jobs: int) -> tuple[float, float]:
    from bench import throughput

    return throughput.bench_conveyor(jobs, processes=2, threads=8, prefetch=16)


SIDES: dict[str, Callable[[int], tuple[float, float]]] = {
    "celery-prefork": lambda jobs: bench_celery(jobs, "prefork"),
    "celery-threads": lambda jobs: bench_celery(jobs, "threads"),
    "rq-simple": lambda jobs: bench_rq(jobs, "rq.worker.SimpleWorker"),
    "rq-fork": lambda jobs: bench_rq(min(jobs, RQ_FORK_MAX_JOBS), "rq.worker.Worker"),
    "conveyor": bench_conveyor,
}
LABELS = {
    "celery-prefork": "Celery prefork 2",
    "celery-threads": "Celery threads 2x8",
    "rq-simple": "RQ 2 SimpleWorkers",
    "rq-fork": f"RQ 2 Workers (fork; {RQ_FORK_MAX_JOBS} jobs at most)",
    "conveyor": "Conveyor 2x8",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--skip", default="", help="comma-separated sides to leave out")
    args = parser.parse_args()
    stop_children_at_exit()
    skipped = {name.strip() for name in args.skip.split(",") if name.strip()}
    results = {name: run(args.jobs) for name, run in SIDES.items() if name not in skipped}
    print(f"{args.jobs} no-op jobs on the machine's Redis")
    for name, (enqueue, processing) in results.items():
        print(f"{LABELS[name]:<42} enqueue {enqueue:8.0f}/s   processing {processing:8.0f}/s")
    if "conveyor" in results:
        conveyor = results["conveyor"][1]
        for name, (_, processing) in results.items():
            if name != "conveyor":
                print(f"Conveyor / {LABELS[name]:<42} {conveyor / processing:6.2f} (target > 1)")


if __name__ == "__main__":
    main()
