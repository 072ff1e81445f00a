"""Test-suite policy: lanes by directory, no silent skips in CI, per-lane counts.

Lanes are markers (unit, integration, e2e, realkernel, reliability, rgw, boot). A test's
lane comes from its directory unless it is marked explicitly. Under CI=true a test that would be
skipped (a component is missing) fails instead, and a lane named in SBPS_EXPECT_LANES
that ran no test fails the run.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.images", "tests.fixtures.proxy",
                  "tests.fixtures.marshal", "tests.fixtures.dns", "tests.fixtures.tgt",
                  "tests.fixtures.rgw"]

LANES = ("unit", "integration", "e2e", "realkernel", "reliability", "rgw", "boot")
_DIR_LANE = {"unit": "unit", "integration": "integration", "e2e": "e2e", "configfs":
             "integration", "realkernel": "realkernel", "reliability": "reliability", "rgw": "rgw",
             "boot": "boot"}
_counts: dict[str, Counter[str]] = {lane: Counter() for lane in LANES}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _lane(item: pytest.Item) -> str:
    for lane in LANES:
        if item.get_closest_marker(lane) is not None:
            return lane
    return "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        if any(item.get_closest_marker(lane) for lane in LANES):
            continue
        try:
            first = Path(str(item.path)).relative_to(root).parts[0]
        except ValueError:
            continue
        item.add_marker(getattr(pytest.mark, _DIR_LANE.get(first, "unit")))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI=true, which does not allow skips: {reason}"
    report.sbps_lane = _lane(item)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    lane = getattr(report, "sbps_lane", None)
    if lane is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _counts[lane][report.outcome] += 1


def _expected_lanes() -> list[str]:
    raw = os.environ.get("SBPS_EXPECT_LANES", "")
    return [lane.strip() for lane in raw.split(",") if lane.strip()]


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    terminalreporter.section("tests run per lane")
    for lane in LANES:
        c = _counts[lane]
        terminalreporter.write_line(
            f"{lane:12} {sum(c.values()):5} ran: {c['passed']} passed, {c['failed']} failed, "
            f"{c['skipped']} skipped")
    for lane in _expected_lanes():
        if sum(_counts[lane].values()) == 0:
            terminalreporter.write_line(f"lane {lane!r} was expected but ran no test",
                                        red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    missing = [lane for lane in _expected_lanes() if sum(_counts[lane].values()) == 0]
    if missing and not session.config.option.collectonly:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
