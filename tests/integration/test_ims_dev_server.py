"""The development IMS fake (contrib/ims_dev_server.py) as a real process on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import (
    IMS_DEV_SERVER,
    IMS_ODD_RECORDS,
    IMS_TEST_TOKEN,
    IMSServer,
    start_ims_server,
    stop_process,
)

LINK = {"path": "s3://boot-images/x/manifest.json", "etag": "abc", "type": "s3"}


@pytest.mark.parametrize("prefix", ["/v3", "/apis/ims/v3"])
def test_crud_under_both_prefixes(ims_server: IMSServer, prefix: str) -> None:
    rec = ims_server.json("POST", f"{prefix}/images",
                          {"name": "img", "link": LINK, "metadata": {"a": "b"}}, expect=201)
    assert rec["name"] == "img" and rec["arch"] == "x86_64" and rec["link"] == LINK
    assert rec["metadata"] == {"a": "b"} and rec["created"] and len(rec["id"]) == 36
    assert ims_server.json("GET", f"{prefix}/images/{rec['id']}") == rec
    assert ims_server.json("GET", f"{prefix}/images") == [rec]
    new_link = {**LINK, "etag": "def"}
    patched = ims_server.json("PATCH", f"{prefix}/images/{rec['id']}",
                              {"link": new_link, "arch": "aarch64"})
    assert patched["link"] == new_link and patched["arch"] == "aarch64"
    ims_server.json("DELETE", f"{prefix}/images/{rec['id']}", expect=204)
    assert ims_server.json("GET", f"{prefix}/images") == []
    deleted = ims_server.json("GET", f"{prefix}/deleted/images/{rec['id']}")
    assert deleted["id"] == rec["id"] and deleted["deleted"]
    assert [d["id"] for d in ims_server.json("GET", f"{prefix}/deleted/images")] == [rec["id"]]


def test_metadata_set_and_remove(ims_server: IMSServer) -> None:
    rec = ims_server.create_image("img")
    assert rec["metadata"] == {}
    assert ims_server.set_label(rec["id"], "sbps-project")["metadata"] == {
        "sbps-project": "true"}
    ims_server.set_label(rec["id"], "owner", "pe")
    assert ims_server.remove_label(rec["id"], "sbps-project")["metadata"] == {"owner": "pe"}
    assert ims_server.get(rec["id"])["metadata"] == {"owner": "pe"}


def test_errors_are_problem_json(ims_server: IMSServer) -> None:
    rec = ims_server.create_image("img")
    status, headers, raw = ims_server.request(
        "PATCH", f"/v3/images/{rec['id']}",
        {"metadata": {"operation": "replace", "key": "k", "value": "v"}})
    assert status == 400 and headers["Content-Type"].startswith("application/problem+json")
    assert json.loads(raw)["status"] == 400 and "replace" in json.loads(raw)["detail"]
    for method in ("GET", "PATCH", "DELETE"):
        status, headers, raw = ims_server.request(method, "/v3/images/no-such-id",
                                                  {"arch": "x86_64"})
        assert status == 404, method
        assert json.loads(raw)["title"] == "Not Found"
    assert ims_server.request("POST", "/v3/images", {"link": LINK})[0] == 422
    assert ims_server.request("POST", "/v3/images", {"name": "x", "arch": "sparc"})[0] == 422
    assert ims_server.request("POST", "/v3/images", {"name": "x", "link": {"p": 1}})[0] == 422
    assert ims_server.request("GET", "/v3/deleted/images/no-such-id")[0] == 404


def test_state_survives_restart(tmp_path: Path) -> None:
    first = start_ims_server(tmp_path)
    try:
        rec = first.create_image("kept", metadata={"sbps-project": "true"})
        gone = first.create_image("gone")
        first.delete(gone["id"])
    finally:
        stop_process(first.proc)
        assert first.proc.stdout is not None
        first.proc.stdout.close()
    state = json.loads((tmp_path / "ims-state.json").read_text())
    assert [r["id"] for r in state["images"]] == [rec["id"]]
    second = start_ims_server(tmp_path)
    try:
        assert second.list() == [rec]
        assert second.json("GET", f"/v3/deleted/images/{gone['id']}")["name"] == "gone"
    finally:
        stop_process(second.proc)
        assert second.proc.stdout is not None
        second.proc.stdout.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ims-state-")]


def test_token_required_when_configured(ims_server_with_token: IMSServer) -> None:
    ims = ims_server_with_token
    rec = ims.create_image("img")  # the helper sends the right token
    for prefix in ("/v3", "/apis/ims/v3"):
        assert ims.request("GET", f"{prefix}/images", token="")[0] == 401
        assert ims.request("GET", f"{prefix}/images/{rec['id']}", token="wrong")[0] == 401
        assert ims.request("GET", f"{prefix}/images", token=IMS_TEST_TOKEN)[0] == 200
    status, headers, _ = ims.request("DELETE", f"/v3/images/{rec['id']}", token="x")
    assert status == 401 and headers["Content-Type"].startswith("application/problem+json")
    assert ims.request("GET", "/healthz", token="")[0] == 200


def test_fault_injection_and_request_counter(ims_server: IMSServer) -> None:
    rec = ims_server.create_image("img")
    ims_server.faults(status=503, count=2)
    assert ims_server.request("GET", "/v3/images")[0] == 503
    assert ims_server.request("GET", f"/apis/ims/v3/images/{rec['id']}")[0] == 503
    assert ims_server.request("GET", "/v3/images")[0] == 200
    ims_server.faults(garbage=True)
    status, _, raw = ims_server.request("GET", "/v3/images")
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    ims_server.faults(delay=0.01)
    assert ims_server.request("GET", "/v3/images")[0] == 200
    ims_server.faults(status=500, count=5)
    ims_server.clear_faults()
    assert ims_server.request("GET", "/v3/images")[0] == 200
    assert ims_server.requests() == {"POST /v3/images": 1, "GET /v3/images": 5,
                                     f"GET /apis/ims/v3/images/{rec['id']}": 1}
    assert ims_server.request("POST", "/__dev/faults", {"count": 1})[0] == 400


def test_odd_records_are_returned_verbatim(ims_server_factory: Any) -> None:
    ims = ims_server_factory(load=[IMS_ODD_RECORDS])
    raw = json.loads(IMS_ODD_RECORDS.read_text())
    assert ims.list() == raw
    by_name = {r["name"]: r for r in ims.list()}
    assert "link" not in by_name["no-link"] and by_name["null-link"]["link"] is None
    assert "metadata" not in by_name["no-metadata"]
    assert "etag" not in by_name["manifest-link-without-etag"]["link"]
    for rec in raw:
        assert ims.get(rec["id"]) == rec
    listed = by_name["metadata-as-list"]
    after = ims.set_label(listed["id"], "owner", "other")
    assert after["metadata"] == [{"key": "sbps-project", "value": "true"},
                                 {"key": "owner", "value": "other"}]
    removed = ims.remove_label(by_name["no-metadata"]["id"], "sbps-project")
    assert removed["metadata"] == {}


def test_refuses_non_loopback_address(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(IMS_DEV_SERVER), "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "127.0.0.1 only" in proc.stderr


def test_help_names_it_a_fake() -> None:
    proc = subprocess.run([sys.executable, str(IMS_DEV_SERVER), "--help"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert "FAKE" in proc.stdout
