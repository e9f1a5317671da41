"""One benchmark on two commits of this repository, in alternating rounds of the same sitting.

    .venv/bin/python bench/before_after.py --before 5d4c8a2 --after HEAD --bench throughput [--rounds 3] [-- ARGS]

Each commit is checked out in a ``git worktree`` of its own (sharing this
``.venv``) and the benchmark script runs there in turn: before, after,
before, after... so both meet the same minutes of a shared machine. Each run
prints its own baseline (plain Dramatiq, plain smtplib), which is shown
beside Conveyor's figure: the machine's speed moves, the ratio to the
same-run baseline less. The summary gives, per commit, the medians of
Conveyor's rate and of its ratio to the baseline, and after/before of each.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Per benchmark: the script, and how to read (baseline, conveyor) rates from its output.
PARSERS = {
    "throughput": (
        "bench/throughput.py",
        re.compile(r"processing plain dramatiq\s+(?P<base>\d+)/s\s+conveyor\s+(?P<ours>\d+)/s"),
    ),
    "email": (
        "bench/email.py",
        re.compile(r"round \d+: plain\s+(?P<base>\d+) emails/s, job\s+(?P<ours>\d+) emails/s"),
    ),
}


def _git(*args: str) -> str:
    return subprocess.check_output(["git", *args], cwd=ROOT, text=True).strip()


def _worktree(commit: str, into: Path) -> Path:
    path = into / commit[:12]
    subprocess.check_call(["git", "worktree", "add", "--detach", "-q", str(path), commit], cwd=ROOT)
    (path / ".venv").symlink_to(ROOT / ".venv")
    return path


def _database(name: str) -> str:
    """A database of its own per commit (their migrations differ); created when missing."""
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def _run(
    tree: Path, script: str, extra: list[str], pattern: re.Pattern[str], database: str
) -> list[tuple[float, float]]:
    env = {**os.environ, "DATABASE_URL": database}
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/python"), script, *extra],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
    )
    figures = [(float(m["base"]), float(m["ours"])) for m in pattern.finditer(proc.stdout)]
    if proc.returncode != 0 or not figures:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{script} failed in {tree}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--bench", choices=sorted(PARSERS), required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="arguments for the benchmark script (after --)")
    args = parser.parse_args()
    script, pattern = PARSERS[args.bench]
    commits = {"before": _git("rev-parse", args.before), "after": _git("rev-parse", args.after)}
    work = Path(tempfile.mkdtemp(prefix="conveyor-before-after-"))
    trees = {name: _worktree(commit, work) for name, commit in commits.items()}
    databases = {name: _database(f"bench_{args.bench}_{name}") for name in commits}
    results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    try:
        for round_ in range(1, args.rounds + 1):
            for name in ("before", "after"):
                figures = _run(trees[name], script, args.extra, pattern, databases[name])
                results[name] += figures
                for base, ours in figures:
                    print(
                        f"round {round_} {name:6} {commits[name][:8]}: baseline {base:7.0f}/s  "
                        f"conveyor {ours:7.0f}/s  ratio {ours / base:.2f}",
                        flush=True,
                    )
    finally:
        for tree in trees.values():
            subprocess.call(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
        shutil.rmtree(work, ignore_errors=True)
    medians = {
        name: (statistics.median(o for _, o in rows), statistics.median(o / b for b, o in rows))
        for name, rows in results.items()
    }
    for name, (rate, ratio) in medians.items():
        print(f"median {name:6}: conveyor {rate:7.0f}/s, ratio to its baseline {ratio:.2f}")
    print(
        f"after / before: conveyor rate {medians['after'][0] / medians['before'][0]:.2f}, "
        f"ratio to baseline {medians['after'][1] / medians['before'][1]:.2f} (target >= 0.95)"
    )


if __name__ == "__main__":
    main()
