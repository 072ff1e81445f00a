"""A compute node boots through sbps for real: qemu runs the Debian kernel with the sbps
initramfs and, on its command line, exactly the ``cmdline`` ``GET /v1/bootparams/{id}``
returned; the node resolves the SRV name in Knot, logs in to tgtd with the kernel's iSCSI
initiator, takes the disk whose WWID the parameters imply, mounts the squashfs under a
tmpfs overlay and runs the image's init, which prints a marker and the root's WWID.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sbps.core import identity
from sbps.publish.boot import params as bootparams
from tests.boot.conftest import Fleet
from tests.boot.node import run
from tests.fixtures.tgt import stop_tgtd


def test_a_node_boots_from_the_published_parameters(fleet: Callable[[int], Fleet],
                                                    tmp_path: Path) -> None:
    f = fleet(1)
    pub = f.publish()
    params = bootparams.parse(pub["cmdline"])
    assert params.wwid == pub["wwid"] == identity.rootfs(params.path, params.etag).wwid
    boot = run(f.node, pub["cmdline"], tmp_path)
    print(boot.console[-3000:])
    assert boot.booted, boot.console[-3000:]
    assert boot.wwids == [pub["wwid"]], boot.console[-3000:]
    assert "root disk /dev/sd" in boot.console and pub["wwid"] in boot.console


def test_the_first_srv_target_down_the_next_one_boots(fleet: Callable[[int], Fleet],
                                                      tmp_path: Path) -> None:
    f = fleet(2)
    pub = f.publish()
    first = f.workers[0]
    proc, tgtd = f.tgtds[0]
    # Equal priority and weight: the client tries iscsi-server-id-001 (ncn-w001) first.
    # Stop its tgtd but keep its records, as a crashed worker does.
    stop_tgtd(proc, tgtd.control_port)
    boot = run(f.node, pub["cmdline"], tmp_path)
    assert boot.booted, boot.console[-3000:]
    assert boot.wwids == [pub["wwid"]]
    assert f"no answer from 10.0.2.2:{tgtd.port}" in boot.console, boot.console[-3000:]
    assert "(target iscsi-server-id-002." in boot.console
    assert first.proc is not None and first.proc.poll() is None, "the marshal kept running"


def test_the_wrong_wwid_is_refused_with_both_printed(fleet: Callable[[int], Fleet],
                                                     tmp_path: Path) -> None:
    """The image was replaced behind the same path (another etag): the node's parameters
    name the old identity; the target exports only the new one; the disk is refused."""
    f = fleet(1)
    pub = f.publish()
    params = bootparams.parse(pub["cmdline"])
    stale = params.etag.replace(params.etag[0], "f" if params.etag[0] != "f" else "e", 1)
    old = bootparams.BootParams(path=params.path, etag=stale, srv_name=params.srv_name,
                                iqn_prefix=params.iqn_prefix, timeout=20)
    words = [w for w in bootparams.tokens(pub["cmdline"]) if not w.startswith("root=")]
    cmdline = " ".join([*words, bootparams.generate(old)])
    boot = run(f.node, cmdline, tmp_path, timeout=180)
    assert not boot.booted
    assert boot.emergency, boot.console[-3000:]
    assert (f"WWID {pub['wwid']} is not the image's WWID {old.wwid}" in boot.console), \
        boot.console[-3000:]
    assert "FATAL: no SBPS target gave the root" in boot.console
