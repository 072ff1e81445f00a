"""Node gate, manual drain and DNS on a running marshal, with a real Knot server (RFC 2136,
TSIG). Records are read back from Knot; the target state is read from configfs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.dns import DOMAIN, SYSTEM, KnotServer, query
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer, free_port

SRV = f"_sbps-hsn._tcp.{SYSTEM}.{DOMAIN}."


def dns_settings(knot: KnotServer) -> dict[str, Any]:
    return {"mode": "rfc2136", "server": "127.0.0.1", "port": knot.port,
            "tsig_key_file": str(knot.key_file), "ttl": 60, "hsn_address": "127.0.0.11",
            "nmn_address": "127.0.0.12"}


def portals_on(dns: dict[str, Any]) -> dict[str, Any]:
    """Portals on the A addresses: sbps registers only addresses a portal listens on."""
    return {"portals": [f"{dns['hsn_address']}:3260", f"{dns['nmn_address']}:3260"]}


def srv_targets(knot: KnotServer) -> set[str]:
    return {r.split()[-1] for r in query(knot.port, SRV, "SRV")}


def test_gate_file_closes_dns_first_then_the_target_and_reopens(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], knot_server: KnotServer, tmp_path: Path) -> None:
    upload_ims_image("compute", label=True)
    flag = tmp_path / "serve"
    flag.touch()
    w = make_worker("ncn-w001", ims_server, dns=dns_settings(knot_server),
                    target=portals_on(dns_settings(knot_server)),
                    node={"system_name": SYSTEM, "site_domain": DOMAIN, "gate": "file",
                          "gate_file": str(flag)},
                    reconcile={"drain_delay": "3s"})
    w.start()
    host = f"iscsi-server-id-001.hsn.{SYSTEM}.{DOMAIN}."
    wait_until("SRV and A records", lambda: host in srv_targets(knot_server)
               and query(knot_server.port, host, "A") == {"127.0.0.11"}, worker=w)
    wait_until("the export", w.luns, worker=w)
    assert w.tpg_enabled()
    flag.unlink()
    wait_until("DNS withdrawn", lambda: not srv_targets(knot_server), worker=w)
    assert w.tpg_enabled(), "the target must keep serving during the drain delay"
    wait_until("the target disabled after the drain delay", lambda: not w.tpg_enabled(),
               worker=w)
    assert w.luns(), "closing the gate never removes LUNs"
    flag.touch()  # field failure 9: the target must come back when the gate reopens
    wait_until("the target re-enabled", w.tpg_enabled, worker=w)
    wait_until("DNS registered again", lambda: host in srv_targets(knot_server), worker=w)
    assert w.stop() == 0
    # withdraw_on_stop (default true): a clean stop removes this worker's records.
    assert not srv_targets(knot_server)


def test_sbpsctl_drain(make_worker: Callable[..., Worker], ims_server: IMSServer,
                       upload_ims_image: Callable[..., Any], knot_server: KnotServer) -> None:
    upload_ims_image("compute", label=True)
    w = make_worker("ncn-w002", ims_server, dns=dns_settings(knot_server),
                    target=portals_on(dns_settings(knot_server)),
                    node={"system_name": SYSTEM, "site_domain": DOMAIN},
                    reconcile={"drain_delay": "2s"})
    w.start()
    wait_until("registered", lambda: srv_targets(knot_server), worker=w)

    def sbpsctl(*args: str) -> dict[str, Any]:
        r = subprocess.run([sys.executable, "-c", "from sbps.cli import run; run()",
                            "--config", str(w.config_path), *args, "--json"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    doc = sbpsctl("drain")
    assert doc["drained"] is True and doc["serving"] is False
    assert not srv_targets(knot_server) and not w.tpg_enabled()
    # A restart keeps the drain: the target is never enabled again, not even briefly.
    assert w.stop() == 0
    (w.root / "state/http-url").unlink()
    w.start()
    seen = []
    deadline = time.monotonic() + 8  # beyond the 2 s drain delay and the first passes
    while time.monotonic() < deadline:
        seen.append(w.tpg_enabled())
        time.sleep(0.05)
    assert not any(seen), "a drained worker enabled its target after a restart"
    wait_until("the API URL", lambda: (w.root / "state/http-url").exists(), worker=w)
    assert not srv_targets(knot_server)
    doc = sbpsctl("drain", "--undo")
    assert doc["drained"] is False
    wait_until("serving again", lambda: w.tpg_enabled() and srv_targets(knot_server), worker=w)
    assert w.stop() == 0


def test_peers_check_finds_the_fleet_in_dns(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], knot_server: KnotServer) -> None:
    """`sbpsctl peers check` with no URL: the workers are those in the SRV records this
    worker registers, each reached at its A record's address on http.port."""
    upload_ims_image("compute", label=True)
    port = free_port()
    workers = []
    for n, address in ((1, "127.0.0.21"), (2, "127.0.0.22")):
        dns = {**dns_settings(knot_server), "hsn_address": f"127.0.1.{n}",
               "nmn_address": address}
        w = make_worker(f"ncn-w00{n}", ims_server, dns=dns, target=portals_on(dns),
                        node={"system_name": SYSTEM, "site_domain": DOMAIN},
                        http={"bind": address, "port": port})
        w.start()
        workers.append(w)
    nmn = f"_sbps-nmn._tcp.{SYSTEM}.{DOMAIN}."
    wait_until("both workers registered", lambda: len(query(knot_server.port, nmn, "SRV")) == 2
               and all(w.luns() for w in workers), worker=workers[0])

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from sbps.cli import run; run()",
                               "--config", str(workers[0].config_path), "peers", "check",
                               "--json", *extra], capture_output=True, text=True, timeout=120)

    r = wait_until("the workers agree", lambda: (lambda r: r if r.returncode == 0 else None)(
        check()), worker=workers[0])
    doc = json.loads(r.stdout)
    assert sorted(doc["workers"]) == [f"http://127.0.0.2{n}:{port}" for n in (1, 2)]
    # One worker stops (its records withdrawn): the fleet is what DNS says, now one worker.
    assert workers[1].stop() == 0
    doc = json.loads(check().stdout)
    assert list(doc["workers"]) == [f"http://127.0.0.21:{port}"]
    r = check("--network", "hsn")  # the APIs do not listen on the HSN addresses
    assert r.returncode == 1 and "http.bind" in r.stdout
