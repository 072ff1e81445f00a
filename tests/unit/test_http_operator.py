"""The operator's documents: why an image is or is not exported, and who is logged in."""

from __future__ import annotations

from dataclasses import replace

from sbps.core.actions import ClaimLun, Note
from sbps.core.model import Problem
from sbps.core.target_state import LoggedIn, LunStats
from sbps.publish.http.operator import sessions_doc, why_doc
from sbps.reconcile.apply import Report, Result
from tests.fixtures.http_api import make_status, rootfs

A, B, C, D = rootfs("aaaa-1"), rootfs("bbbb-2"), rootfs("cccc-3"), rootfs("dddd-4")


def _steps(doc: dict[str, object]) -> dict[str, object]:
    return {s["step"]: s["ok"] for s in doc["steps"]}  # type: ignore[index, union-attr]


def test_an_exported_image_by_ims_id_key_or_name() -> None:
    status = make_status([(A, 11)])
    for query in ("aaaa-1", A.identity.key, A.identity.name):
        doc = why_doc(status, query)
        assert doc["exported"] and doc["state"] == "exported"
        assert _steps(doc) == {"catalog": True, "staging": True, "claim": True, "gate": True,
                               "export": True}


def test_an_unknown_image_names_its_catalog_problem() -> None:
    status = replace(make_status([(A, 11)]), problems=(
        Problem("eeee-5", "link.path", "s3://other/x is not in s3.bucket", "foreign_bucket"),))
    doc = why_doc(status, "eeee-5")
    assert not doc["known"] and not doc["exported"]
    assert doc["steps"][0]["ok"] is False and "foreign_bucket" in doc["steps"][0]["detail"]
    assert "not in this worker's catalog" in why_doc(status, "nothing")["steps"][0]["detail"]


def test_a_failed_download_says_so_with_its_retry() -> None:
    doc = why_doc(make_status([], failed=[B]), "bbbb-2")
    assert _steps(doc)["staging"] is False and doc["last_error"].startswith("verification")
    assert "next at" in doc["steps"][1]["detail"]


def test_a_refused_claim_a_conflict_and_a_closed_gate() -> None:
    status = make_status([(A, 11)])
    staged = replace(status.images[0], lun_id=None)
    claim = ClaimLun(reason="new image", subject=C.identity.name, identity=C.identity, lun_id=0)
    status = replace(
        status, images=(staged, replace(staged, name=C.identity.name, image=C)),
        last_report=Report((Result(claim, ok=False, code="s3_conditional_writes_ignored",
                                   message="no LUN id is claimed"),)),
        notes=(Note(C.identity.name, "lun_conflict", "LUN 7 is held by another image"),),
        gate_open=False)
    doc = why_doc(status, "cccc-3")
    steps = _steps(doc)
    assert steps["claim"] is False and steps["conflict"] is False and steps["gate"] is False
    assert "s3_conditional_writes_ignored" in doc["last_error"]


def test_sessions_per_initiator_where_counted_and_per_lun() -> None:
    status = make_status([(A, 11), (B, 12)], read_bytes=5 << 20, commands=3)
    doc = sessions_doc(status, (
        LoggedIn("iqn.x:n1", ("10.0.0.1",), (LunStats(11, 1 << 20, 2),)), LoggedIn("iqn.x:n2")))
    assert doc["sessions"][0]["luns"] == [{"lun_id": 11, "key": A.identity.name,
                                          "read_bytes": 1 << 20, "commands": 2}]
    assert doc["sessions"][1]["luns"] is None
    assert [x["read_bytes"] for x in doc["luns"]] == [5 << 20, 10 << 20]
