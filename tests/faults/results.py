"""The fault suite's results table: one row per scenario (jobs, lost, ran twice, time to recover).

A fault test calls ``record(...)`` once it has counted its outcome; rows go
to a JSON-lines file the whole pytest run shares (xdist workers included,
through ``CONVEYOR_FAULT_RESULTS``, set by the root conftest), and the root
conftest prints them as a table at the end of the run and writes
``var/fault-results.md``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

ENV = "CONVEYOR_FAULT_RESULTS"


@dataclass(frozen=True)
class Row:
    scenario: str
    jobs: int
    lost: int
    ran_twice: int
    recover_s: float
    #: What "ran twice" may reach for this failure (the documented bound), in words.
    bound: str = "0"


def record(scenario: str, *, jobs: int, lost: int, ran_twice: int, recover_s: float, bound: str = "0") -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    row = Row(scenario, jobs, lost, ran_twice, round(recover_s, 1), bound)
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(asdict(row)) + "\n")


def read(path: Path) -> list[Row]:
    if not path.exists():
        return []
    return [Row(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def table(rows: list[Row]) -> str:
    header = "| scenario | jobs | lost | ran twice | bound on ran twice | time to recover (s) |"
    lines = [header, "|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: r.scenario):
        lines.append(f"| {row.scenario} | {row.jobs} | {row.lost} | {row.ran_twice} | {row.bound} | {row.recover_s} |")
    return "\n".join(lines)
