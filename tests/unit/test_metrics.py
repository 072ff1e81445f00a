"""The metrics collector over status snapshots: totals across passes, latency, extras."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from sbps.core.actions import CreateLun, Note
from sbps.core.model import ImageState, Problem
from sbps.core.target_state import Lun
from sbps.publish.metrics import CacheStats, SbpsCollector, StagingStats
from sbps.reconcile.apply import Report, Result
from sbps.reconcile.lifecycle import ImageStatus
from sbps.reconcile.status import Status
from tests.fixtures.http_api import make_status, rootfs

A, B = rootfs("aaaa-1"), rootfs("bbbb-2")


def scrape(collector: SbpsCollector) -> list[str]:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode().splitlines()


class Holder:
    def __init__(self, status: Status) -> None:
        self.status = status


def test_totals_accumulate_once_per_pass() -> None:
    h = Holder(make_status([(A, 1)]))
    c = SbpsCollector(lambda: h.status, version="9.9")
    c.observe(h.status)
    c.observe(h.status)  # the same pass again (hook and scrape): counted once
    failed = Report((Result(CreateLun(reason="r", subject="s", lun=Lun(2, "s")), ok=False,
                            code="backend"),))
    h.status = replace(h.status, passes=2, last_pass_seconds=42.0, last_report=failed,
                       errors=("dns: refused",), dns_registered=False)
    lines = scrape(c)
    assert 'sbps_reconcile_runs_total{result="success"} 1.0' in lines
    assert 'sbps_reconcile_runs_total{result="error"} 1.0' in lines
    assert 'sbps_reconcile_duration_seconds_bucket{le="60"} 2.0' in lines
    assert 'sbps_reconcile_duration_seconds_bucket{le="30"} 1.0' in lines
    assert 'sbps_actions_total{kind="CreateLun",result="failed"} 1.0' in lines
    assert 'sbps_dns_updates_total{result="failed"} 1.0' in lines
    assert 'sbps_dns_updates_total{result="registered"} 1.0' in lines
    assert 'sbps_build_info{backend="lio",python="' in "\n".join(lines)


def test_label_to_export_latency() -> None:
    first = Status(iqn="iqn.x", backend="tgt", passes=1, images=(
        ImageStatus(B.identity.name, ImageState.DISCOVERED, 100.0, image=B),))
    later = replace(first, passes=2, images=(
        ImageStatus(B.identity.name, ImageState.EXPORTED, 145.0, image=B, lun_id=3),))
    h = Holder(first)
    c = SbpsCollector(lambda: h.status, version="1")
    c.observe(first)
    h.status = later
    lines = scrape(c)
    assert "sbps_label_to_export_seconds_count 1.0" in lines
    assert "sbps_label_to_export_seconds_sum 45.0" in lines
    assert 'sbps_label_to_export_seconds_bucket{le="30"} 0.0' in lines


def test_problems_and_optional_sources() -> None:
    st = replace(make_status([(A, 1)]), problems=(
        Problem("ims:1", "link.etag", "missing", code="missing_etag"),
        Problem("ims:2", "link.etag", "missing", code="missing_etag")))
    c = SbpsCollector(lambda: st, version="1",
                      staging=lambda: StagingStats(bytes_total=10, seconds_total=2.5,
                                                   downloads_total=1),
                      cache=lambda: CacheStats(used_bytes=4096, budget_bytes=2**30),
                      sessions=lambda: {"iqn.x": 3})
    lines = scrape(c)
    assert 'sbps_catalog_problems{reason="missing_etag"} 2.0' in lines
    assert "sbps_staging_bytes_total 10.0" in lines
    assert "sbps_cache_budget_bytes 1.073741824e+09" in lines
    assert 'sbps_sessions{target="iqn.x"} 3.0' in lines
    assert "sbps_claims_held 1.0" in lines


def test_no_pass_yet_is_not_a_run() -> None:
    st = Status(iqn="iqn.x", backend="lio")
    lines = scrape(SbpsCollector(lambda: st, version="1"))
    assert 'sbps_reconcile_runs_total{result="success"} 0.0' in lines
    assert "iscsi_rootfs_lun_cnt 0.0" in lines and "sbps_ready 0.0" in lines


def test_every_metric_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    st = make_status([(A, 1)])
    c = SbpsCollector(lambda: st, version="1", staging=StagingStats, sessions=dict,
                      cache=lambda: CacheStats(0, 0))
    names = {m.name + ("_total" if m.type == "counter" else "") for m in c.collect()}
    assert names and all(f"`{n}`" in doc for n in names), sorted(
        n for n in names if f"`{n}`" not in doc)


def test_lun_info_and_plan_notes() -> None:
    """sbps_lun_info names each of our LUNs with its key and serial, so rules can compare
    workers; foreign LUNs are left out; plan notes are counted by code."""
    st = make_status([(A, 1)], retiring=[(B, 7)])
    foreign = Lun(9, "not-ours")
    assert st.target is not None
    st = replace(st, target=replace(st.target, luns=st.target.luns + (foreign,)),
                 notes=(Note("x", "lun_conflict", "LUN 3 is taken"),
                        Note("y", "retiring", "kept"), Note("z", "retiring", "kept")))
    lines = scrape(SbpsCollector(lambda: st, version="1"))
    a, b = A.identity, B.identity
    assert (f'sbps_lun_info{{ims_id="aaaa-1",key="{a.name}",kind="rootfs",lun="1",'
            f'serial="{a.serial}"}} 1.0') in lines
    assert any(f'key="{b.name}"' in line and 'lun="7"' in line for line in lines)
    assert not any(line.startswith("sbps_lun_info") and "not-ours" in line for line in lines)
    assert 'sbps_plan_notes{code="retiring"} 2.0' in lines
    assert 'sbps_plan_notes{code="lun_conflict"} 1.0' in lines
