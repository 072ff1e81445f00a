"""Problems are logged once when they appear, once when they go."""

from __future__ import annotations

import logging

import pytest

from sbps.core.model import Problem
from sbps.sources.catalog.snapshot import ProblemLog

A = Problem("img-a", "link", "missing", "no_link")
B = Problem("img-b", "arch", "unknown architecture 'sparc'", "unknown_arch")


def test_problems_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    plog = ProblemLog(logging.getLogger("test.problems"))
    with caplog.at_level(logging.INFO, "test.problems"):
        plog.update([A], [])
        plog.update([A], [])
        plog.update([A, B], [])
        plog.update([B], [])
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["image skipped: img-a: link: missing",
                     "image skipped: img-b: arch: unknown architecture 'sparc'",
                     "problem resolved: img-a: link: missing"]
    assert plog.problems == (B,)
