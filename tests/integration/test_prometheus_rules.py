"""The alert rules pass ``promtool check rules`` and their unit tests (``promtool test
rules``), with Debian's prometheus package."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "contrib/prometheus"


@pytest.fixture
def promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return tool


def test_rules_check(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", "sbps-alerts.yml"], cwd=RULES,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_unit_tests(promtool: str) -> None:
    result = subprocess.run([promtool, "test", "rules", "sbps-alerts.test.yml"], cwd=RULES,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = (RULES / "sbps-alerts.test.yml").read_text()
    # at least two alerts have unit tests that expect them to fire
    assert sum(f"alertname: {a}" in tested for a in (
        "SbpsDaemonDown", "SbpsPeersDisagree", "SbpsCacheNearlyFull",
        "SbpsPassesFailing", "SbpsDnsUpdatesFailing", "SbpsClaimsOrphaned")) >= 2
