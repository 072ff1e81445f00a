"""The Grafana dashboard and the alert rules query only documented metrics, and cover what
the operations issue lists (pure: reads the files, no Prometheus or Grafana)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs/metrics.md").read_text()
NAME = re.compile(r"\b((?:sbps|iscsi)_[a-z0-9_]+)\b")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def documented(name: str) -> bool:
    if f"`{name}`" in DOC:
        return True
    base = name.rsplit("_", 1)[0]
    return name.endswith(HISTOGRAM_SERIES) and any(
        line.startswith(f"| `{base}` | histogram |") for line in DOC.splitlines())


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ROOT / "contrib/grafana/sbps.json").read_text())
    return doc


def exprs(doc: dict[str, Any]) -> Iterator[str]:
    for p in doc["panels"]:
        for t in p.get("targets", []):
            yield t["expr"]
    for var in doc["templating"]["list"]:
        if var.get("type") == "query":
            yield var["definition"]


def rule_exprs() -> Iterator[tuple[str, str]]:
    rules = yaml.safe_load((ROOT / "contrib/prometheus/sbps-alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def test_dashboard_queries_only_documented_metrics() -> None:
    names = {n for e in exprs(dashboard()) for n in NAME.findall(e)}
    assert names, "the dashboard queries no sbps metric"
    assert all(documented(n) for n in names), sorted(n for n in names if not documented(n))


def test_dashboard_covers_the_issue() -> None:
    names = {n for e in exprs(dashboard()) for n in NAME.findall(e)}
    for wanted in ("sbps_reconcile_duration_seconds_bucket", "sbps_reconcile_runs_total",
                   "sbps_actions_total", "sbps_images", "sbps_catalog_problems",
                   "sbps_staging_bytes_total", "sbps_cache_used_bytes",
                   "sbps_cache_budget_bytes", "sbps_label_to_export_seconds_bucket",
                   "sbps_dns_updates_total", "sbps_sessions", "iscsi_read_rate",
                   "sbps_lun_read_bytes_total", "sbps_lun_info"):
        assert wanted in names, wanted
    # per-LUN series are shown with the field's label names
    per_lun = [t["legendFormat"] for p in dashboard()["panels"] for t in p.get("targets", [])
               if "iscsi_read_rate" in t["expr"]]
    assert per_lun and all("{{lun}}" in f and "{{key}}" in f for f in per_lun)


def test_dashboard_layout() -> None:
    """Unique panel ids, a 24-column grid, no two panels on the same cells."""
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], int] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, (p["title"], cells[(x, y)])
                cells[(x, y)] = p["id"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]


def test_alert_rules_query_only_documented_metrics() -> None:
    used = {n for _, e in rule_exprs() for n in NAME.findall(e)}
    assert used and all(documented(n) for n in used), sorted(
        n for n in used if not documented(n))


def test_alert_rules_cover_the_issue() -> None:
    names = {name for name, _ in rule_exprs()}
    assert {"SbpsDaemonDown", "SbpsPassesFailing", "SbpsImageFailed", "SbpsPeersDisagree",
            "SbpsCacheNearlyFull", "SbpsDnsUpdatesFailing", "SbpsClaimsOrphaned"} <= names
