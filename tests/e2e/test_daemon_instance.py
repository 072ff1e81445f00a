"""One marshal per state directory: a second ``sbps-marshal`` with the same configuration
exits 1 at once with one line, and touches nothing: no port, no pass, no CHAP account
re-created, no DNS withdrawn (tgt backend, CHAP, a real Knot server for DNS)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.test_daemon_gate_dns import dns_settings, srv_targets
from tests.fixtures.dns import DOMAIN, SYSTEM, KnotServer
from tests.fixtures.marshal import Worker, _env, wait_until
from tests.fixtures.servers import IMSServer
from tests.fixtures.tgt import Tgtd

SECRET = "instance-chap-secret-0001"


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "marshal.log"}


def test_a_second_instance_exits_at_once_and_touches_nothing(
        tgtd: Tgtd, make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], knot_server: KnotServer, tmp_path: Path) -> None:
    upload_ims_image("compute", label=True)
    (tmp_path / "chap.user").write_text("sbps-node\n")
    (tmp_path / "chap.secret").write_text(SECRET + "\n")
    (tmp_path / "chap.secret").chmod(0o600)
    w = make_worker("ncn-w001", ims_server, backend="tgt", tgtd=tgtd,
                    dns=dns_settings(knot_server),
                    node={"system_name": SYSTEM, "site_domain": DOMAIN},
                    target={"chap_user_file": str(tmp_path / "chap.user"),
                            "chap_secret_file": str(tmp_path / "chap.secret")})
    w.start()
    wait_until("registered", lambda: srv_targets(knot_server), worker=w)
    wait_until("two passes", lambda: "pass 2 finished" in w.log(), worker=w)
    records = srv_targets(knot_server)
    lock = w.root / "state" / "marshal.lock"
    assert lock.read_text().strip() == str(w.proc.pid if w.proc else -1)
    assert oct(lock.stat().st_mode & 0o777) == "0o600"
    accounts = tgtd.admin("--mode", "account", "--op", "show").stdout
    before = _snapshot(w.root)
    log_before = w.log()

    for extra in ((), ("--once",)):
        second = subprocess.run(w.command(*extra), capture_output=True, text=True,
                                timeout=60, env=_env())
        assert second.returncode == 1
        assert second.stdout == ""
        assert second.stderr == (f"sbps-marshal: another instance (pid {w.proc.pid}) "  # type: ignore[union-attr]
                                 f"holds {lock}; exiting\n")

    # Nothing changed: the first worker's records, its state files, tgtd's accounts.
    assert srv_targets(knot_server) == records
    assert _snapshot(w.root) == before
    assert tgtd.admin("--mode", "account", "--op", "show").stdout == accounts
    assert w.proc is not None and w.proc.poll() is None
    assert w.stop() == 0
    assert w.log().startswith(log_before)
    # The lock is gone with its holder: the next start takes it.
    w.start()
    wait_until("a restart past the lock", lambda: "pass 1 finished" in
               w.log()[len(log_before):], worker=w)
    assert w.stop() == 0
