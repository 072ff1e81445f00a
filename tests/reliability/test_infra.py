"""Infrastructure faults: the DNS server down, configfs errors (EIO, EBUSY) injected through
the emulation, and tgtd killed and restarted under a tgt-backend worker. Each is reported,
retried and converged; LUNs keep their ids and only verified files are exported. The tgt
worker also proves LUNs read-only: a WRITE through a real initiator is refused."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sbps.sources.s3 import S3
from tests.fixtures.dns import DOMAIN, SYSTEM, KnotServer, query
from tests.fixtures.iscsi import DATA_PROTECT, RemoteSession
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer, wait_port
from tests.fixtures.tgt import Tgtd, stop_tgtd
from tests.reliability import detectors as det
from tests.reliability.conftest import converge, count_crashes, debug_state, inspect, log_lines
from tests.reliability.report import Figures
from tests.reliability.scale import Scale

SRV = f"_sbps-hsn._tcp.{SYSTEM}.{DOMAIN}."


def _srv(knot: KnotServer) -> set[str]:
    try:
        return query(knot.port, SRV, "SRV")
    except Exception:  # the server is down: nothing registered that anyone can see
        return set()


def test_dns_down_and_configfs_errors(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], knot_server: KnotServer, scale: Scale,
        figures: Callable[[str], Figures], truth: det.Truth, sbps_s3: S3,
        s3_bucket: str) -> None:
    rng = scale.rng("infra")
    fig = figures("DNS down; configfs EIO/EBUSY")
    expected = {truth.add(upload_ims_image("infra0", label=True))}
    w = make_worker("ncn-w006", ims_server, node={"system_name": SYSTEM, "site_domain": DOMAIN},
                    dns={"mode": "rfc2136", "server": "127.0.0.1", "port": knot_server.port,
                         "tsig_key_file": str(knot_server.key_file), "ttl": 60,
                         "hsn_address": "127.0.0.11", "nmn_address": "127.0.0.12",
                         "timeout": "1s"})
    book = det.LunBook()
    ctx = {"truth": truth, "book": book, "s3": sbps_s3, "bucket": s3_bucket}
    w.start()
    wait_until("registered", lambda: _srv(knot_server), worker=w)
    assert converge(w, expected)
    root = w.emulation.root
    tpg_lun = os.path.join(root, "target", "iscsi", w.iqn, "tpgt_1", "lun")
    core = os.path.join(root, "target", "core")
    for n in range(scale.fault_rounds):
        knot_server.stop()
        fig.faults += 1
        expected.add(truth.add(upload_ims_image(f"dns{n}", label=True)))
        if converge(w, expected, errors_ok=True):  # exports go on without DNS
            fig.runs += 1
        st = wait_until("DNS reported down", lambda: (lambda s: s if not s["dns_registered"]
                        and any("dns" in e.lower() for e in s["errors"]) else None)(
                            debug_state(w)), worker=w)
        assert st["degraded"] == [] or "ims" not in st["degraded"]
        knot_server.start()
        wait_until("registered again", lambda: _srv(knot_server), worker=w)
        inspect(w, fig, expected=expected, **ctx)

        errno_name = rng.choice(("EIO", "EBUSY"))
        where = rng.choice((core, tpg_lun))
        w.emulation.control.inject(where, errno_name, ops=["mkdir"], prefix=True, once=True)
        fig.faults += 1
        mark = len(w.log())
        expected.add(truth.add(upload_ims_image(f"cfs{n}", label=True)))
        if converge(w, expected):
            fig.runs += 1
        failed = [d for d in log_lines(w, mark) if d.get("msg", "").startswith("action failed")]
        fig.notes.append(f"{errno_name} on mkdir under {os.path.relpath(where, root)}: "
                         f"{len(failed)} failed action(s), then converged")
        assert failed, "the injected error must have been hit and reported"
        inspect(w, fig, expected=expected, **ctx)
    count_crashes(w, fig)
    assert w.stop() == 0
    assert fig.losses == 0, fig.notes
    assert fig.runs == 2 * scale.fault_rounds


def _restart_tgtd(tgtd: Tgtd, log: Path) -> subprocess.Popen[Any]:
    for leftover in (f"/var/run/tgtd/socket.{tgtd.control_port}",
                     f"/var/run/tgtd/socket.{tgtd.control_port}.lock"):
        if os.path.exists(leftover):
            os.unlink(leftover)
    with open(log, "ab") as out:
        proc = subprocess.Popen(["tgtd", "-f", "-C", str(tgtd.control_port), "--iscsi",
                                 f"portal=127.0.0.1:{tgtd.port}"], stdout=out,
                                stderr=subprocess.STDOUT)
    wait_port(tgtd.port, proc, "tgtd")
    return proc


def test_tgtd_killed_and_restarted_and_luns_read_only(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], tgtd: Tgtd, scale: Scale,
        figures: Callable[[str], Figures], truth: det.Truth, sbps_s3: S3,
        s3_bucket: str, tmp_path: Path) -> None:
    fig = figures("tgtd killed and restarted (tgt backend)")
    expected = {truth.add(upload_ims_image(f"tgt{i}", label=True)) for i in range(2)}
    w = make_worker("ncn-w007", ims_server,
                    target={"backend": "tgt", "tgt_control_port": tgtd.control_port,
                            "portals": [tgtd.portal]})
    cache = str(w.settings["stage"]["cache_dir"])
    state = str(w.settings["reconcile"]["state_dir"])
    book = det.LunBook()

    def check() -> None:
        exports = det.tgt_exports(tgtd, w.iqn)
        found = {"corrupt": det.corrupt_exports(exports, truth, cache),
                 "renumbered": book.check(exports), "lost": det.lost(expected, exports),
                 "claims": det.claim_problems(sbps_s3, s3_bucket, w.hostname, state, exports),
                 "partial": det.partial_files(cache)}
        for what, items in found.items():
            setattr(fig, what, getattr(fig, what) + len(items))
            fig.notes.extend(f"{what}: {i}" for i in items[:5])

    def served() -> bool:
        try:
            return {e.serial for e in det.tgt_exports(tgtd, w.iqn)} == expected
        except Exception:  # tgtd is down or restarting
            return False

    w.start()
    wait_until("the exports on tgtd", served, worker=w)
    check()
    restarted: list[subprocess.Popen[Any]] = []
    try:
        for _ in range(scale.fault_rounds):
            if restarted:
                restarted[-1].send_signal(signal.SIGKILL)
                restarted[-1].wait(10)
            else:
                os.kill(tgtd.pid, signal.SIGKILL)  # the fixture's process reaps it
            fig.faults += 1
            restarted.append(_restart_tgtd(tgtd, tmp_path / "tgtd-restarted.log"))
            wait_until("the target rebuilt on the new tgtd", served, worker=w, timeout=90)
            fig.runs += 1
            check()
        lun = min(e.lun for e in det.tgt_exports(tgtd, w.iqn))
        with RemoteSession(tgtd.portal, w.iqn, lun, timeout=30) as s:
            refused = s.call("write_probe")
        fig.notes.append(f"WRITE through libiscsi on LUN {lun}: sense key {refused.key} "
                         f"ascq {refused.ascq:#06x} (DATA PROTECT, write protected)")
        assert (refused.key, refused.ascq) == (DATA_PROTECT, 0x2700)
        count_crashes(w, fig)
        assert w.stop() == 0
    finally:
        w.kill()
        if restarted:
            stop_tgtd(restarted[-1], tgtd.control_port)
    assert fig.losses == 0, fig.notes
    assert fig.runs == scale.fault_rounds
