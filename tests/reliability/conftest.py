"""Fixtures of the reliability lane: the run's scale, the report and worker helpers.

The report is one per session and is written when the session ends, if any scenario ran:
to ``tests/reliability/REPORT.md`` for a full-size run, outside the tree for a CI-size one
(``report.report_path``); the terminal summary says where. Helpers here drive a marshal subprocess (``make_worker``
from tests.fixtures.marshal) and read its state from outside: configfs, its log, its API.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sbps.core.model import Identity
from sbps.sources.s3 import S3
from tests.fixtures.marshal import Worker, wait_until
from tests.reliability import detectors as det
from tests.reliability.crashes import crashes
from tests.reliability.report import Figures, Report, report_path
from tests.reliability.scale import Scale, from_env


@pytest.fixture(scope="session")
def scale() -> Scale:
    return from_env()


REPORT_WRITTEN = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def reliability_report(scale: Scale, pytestconfig: pytest.Config) -> Iterator[Report]:
    report = Report(scale)
    yield report
    if report.rows or report.controls:
        path = report_path(scale)
        report.write(path)
        pytestconfig.stash[REPORT_WRITTEN] = path


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    path = config.stash.get(REPORT_WRITTEN, None)
    if path is not None:
        terminalreporter.write_line(f"reliability report written to {path}")


@pytest.fixture
def figures(reliability_report: Report) -> Iterator[Callable[[str], Figures]]:
    """``figures(scenario)``: a row of the report, added at once and timed to the test's end."""
    made: list[Figures] = []
    t0 = time.monotonic()

    def new(scenario: str) -> Figures:
        row = reliability_report.add(Figures(scenario))
        made.append(row)
        return row

    yield new
    for row in made:
        row.seconds = time.monotonic() - t0


@pytest.fixture
def truth(s3_client: Any, s3_bucket: str) -> det.Truth:
    return det.Truth(s3_client, s3_bucket)


# --- talking to a running worker ------------------------------------------------------

def api_url(w: Worker) -> str:
    path = w.root / "state/http-url"
    return str(wait_until("the API URL", lambda: path.exists() and path.read_text().strip(),
                          worker=w))


def http(url: str, *, token: str | None = None, method: str = "GET",
         body: bytes | None = None, timeout: float = 60) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def admin_token(w: Worker) -> str:
    configured = w.settings.get("http", {}).get("admin_token_file")
    path = Path(configured) if configured else w.root / "state/admin-token"
    return path.read_text().strip()


def run_pass(w: Worker) -> dict[str, Any]:
    """One pass through the admin API (``POST /v1/reconcile?wait=1``); /debug/state after."""
    url, token = api_url(w), admin_token(w)
    status, body = http(f"{url}/v1/reconcile?wait=1", token=token, method="POST")
    assert status == 200, body
    return debug_state(w)


def debug_state(w: Worker) -> dict[str, Any]:
    status, body = http(f"{api_url(w)}/debug/state", token=admin_token(w))
    assert status == 200, body
    return dict(json.loads(body))


def log_lines(w: Worker, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for line in w.log()[start:].splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def count_crashes(w: Worker, fig: Figures) -> None:
    """Add the worker's crashes so far (tests.reliability.crashes) to ``fig``; call it
    before the test stops the worker."""
    found = crashes(w)
    fig.crashes += len(found)
    fig.notes.extend(f"crash: {c}" for c in found[:5])


def exports(w: Worker) -> list[det.Export]:
    """What the worker exports, read from outside: its configfs (lio) or tgtd (tgt)."""
    if w.tgtd is not None:
        return det.tgt_exports(w.tgtd, w.iqn)
    return det.lio_exports(w.luns())


def converge(w: Worker, serials: set[str], timeout: float = 90, *,
             errors_ok: bool = False) -> bool:
    """Wait until exactly ``serials`` are exported and a later pass had nothing to do (and
    reported no error, unless ``errors_ok``: an upstream known to be down)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if w.proc is not None and w.proc.poll() is not None:
            return False
        if {x["serial"] for x in w.luns().values()} == serials:
            mark = len(w.log())
            while time.monotonic() < deadline:
                quiet = any(d.get("msg", "").startswith("pass ") and ": 0 actions, 0 failed"
                            in d.get("msg", "") and (errors_ok or "errors" not in d.get("msg", ""))
                            for d in log_lines(w, mark))
                if quiet:
                    return {x["serial"] for x in w.luns().values()} == serials
                if w.proc is not None and w.proc.poll() is not None:
                    return False
                time.sleep(0.2)
            return False
        time.sleep(0.2)
    return False


def inspect(w: Worker, fig: Figures, *, truth: det.Truth, book: det.LunBook,
            expected: set[str], s3: S3, bucket: str, pending: Iterable[Identity] = ()) -> None:
    """Run every loss detector on a worker and add what they find to ``fig``."""
    found_exports = exports(w)
    cache = str(w.settings["stage"]["cache_dir"])
    state = str(w.settings["reconcile"]["state_dir"])
    found = {
        "corrupt": det.corrupt_exports(found_exports, truth, cache),
        "renumbered": book.check(found_exports),
        "lost": det.lost(expected, found_exports),
        "claims": det.claim_problems(s3, bucket, w.hostname, state, found_exports, pending),
        "partial": det.partial_files(cache),
    }
    for what, items in found.items():
        setattr(fig, what, getattr(fig, what) + len(items))
        fig.notes.extend(f"{what}: {item}" for item in items[:5])
