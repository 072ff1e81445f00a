"""The rejections sink: each rejected document logged and counted once per appearance; and
the metric adds its counts to the catalog's."""

from __future__ import annotations

import logging

import pytest

from sbps.core.decode import DecodeError, loads
from sbps.core.rejections import Rejections
from sbps.publish.metrics import SbpsCollector
from sbps.reconcile.status import Status


def _deep(obj: str) -> DecodeError:
    with pytest.raises(DecodeError) as err:
        loads(b"[" * 100_000, "k8s", obj)
    return err.value


def test_logged_and_counted_once_per_appearance(caplog: pytest.LogCaptureFixture) -> None:
    r = Rejections(capacity=2)
    caplog.set_level(logging.INFO, logger="sbps.core.rejections")
    for _ in range(5):
        r.reject("k8s", _deep("node a"))
    assert r.counts() == {("k8s", "too_deep"): 1}
    warnings = [m.getMessage() for m in caplog.records if m.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("rejected k8s document node a: ")
    r.accepted("k8s", "node a")
    r.accepted("k8s", "node a")  # once only
    assert len([m for m in caplog.records if "readable again" in m.getMessage()]) == 1
    r.reject("k8s", _deep("node a"))  # it came back: a new appearance
    assert r.counts() == {("k8s", "too_deep"): 2}


def test_capacity_bounds_memory() -> None:
    r = Rejections(capacity=2)
    for n in range(100):
        r.reject("claim", _deep(f"LUN {n}"))
    assert len(r._current) == 2 and r.counts() == {("claim", "too_deep"): 100}


def test_accepted_all_forgets_a_source(caplog: pytest.LogCaptureFixture) -> None:
    r = Rejections()
    r.reject("pdns", _deep("GET zones"))
    r.reject("k8s", _deep("node a"))
    r.accepted_all("pdns")
    r.reject("pdns", _deep("GET zones"))
    assert r.counts() == {("pdns", "too_deep"): 2, ("k8s", "too_deep"): 1}


def test_the_metric_adds_the_sinks_counts() -> None:
    r = Rejections()
    r.reject("tenant_map", _deep("/etc/sbps/tenants.toml"))
    collector = SbpsCollector(lambda: Status(iqn="iqn.x", backend="lio"), version="t",
                              rejections=r.counts)
    family = next(m for m in collector.collect() if m.name == "sbps_documents_rejected")
    assert [(s.labels, s.value) for s in family.samples if s.name.endswith("_total")] == [
        ({"source": "tenant_map", "reason": "too_deep"}, 1.0)]
