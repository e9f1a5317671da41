"""docker/prometheus/alerts.yml: valid for promtool, its rules fire as meant, and it reads metrics /metrics serves.

promtool comes with Debian's ``prometheus`` package, which ``scripts/bootstrap.sh test``
installs; without it these tests fail rather than skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from rest_framework.test import APIClient

RULES_DIR = Path(__file__).resolve().parent.parent / "docker" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    # A failure, not a skip: the rules file is only known good once promtool has read it.
    assert promtool is not None, "promtool is missing (Debian's prometheus; scripts/bootstrap.sh test installs it)"
    return subprocess.run([promtool, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_rules_file():
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_rule_fires_on_its_series_and_only_after_its_duration():
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_read_only_metrics_that_metrics_serves(settings, db, clean_redis):
    # Given /metrics switched on
    settings.METRICS_TOKEN = "rules-test-token"
    # When it is scraped
    response = APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer rules-test-token")
    assert response.status_code == 200
    served = set(re.findall(r"^# TYPE (\w+) ", response.content.decode(), flags=re.MULTILINE))
    # Then every conveyor_* name the rules read is one of its metric families (histogram series by their family)
    rules_text = "\n".join(line for line in RULES.read_text().splitlines() if not line.lstrip().startswith("#"))
    wanted = set(re.findall(r"\bconveyor_\w+", rules_text))
    families = {_family(name) for name in wanted}
    assert "conveyor_schedulers_live" in families
    assert families <= served, families - served


def _family(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
