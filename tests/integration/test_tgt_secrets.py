"""tgt, against a real tgtd: no CHAP secret in any process's arguments or environment while
accounts are created and rotated, and a new LUN never visible writable to an initiator."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from sbps.core.actions import SetAuth
from sbps.core.target_state import Chap, Secret
from sbps.target.tgt.tgtadm import Tgtadm
from tests.fixtures.images import BuiltImage
from tests.fixtures.iscsi import GOOD, RemoteSession, Sense
from tests.fixtures.secrets import ProcScan
from tests.fixtures.tgt import Tgtd
from tests.integration.test_tgt_backend import IQN, Rig

pytestmark = pytest.mark.integration

ROTATIONS = 60
UNIT_ATTENTION, NOT_READY, DATA_PROTECT = 6, 2, 7


@pytest.fixture
def rig(tgtd: Tgtd, cache_dir: Path, squashfs_image: Callable[..., BuiltImage]) -> Rig:
    return Rig(tgtd, cache_dir, squashfs_image)


def test_chap_secrets_never_reach_a_process(rig: Rig) -> None:
    rig.image("rootfs-a", 7)
    rig.converge()
    secrets = [f"rotated-secret-{i:03d}-x" for i in range(ROTATIONS)]
    mutual = [f"mutual-secret-{i:03d}-yy" for i in range(ROTATIONS)]
    # Scan for what every secret starts with: one needle each keeps the sweeps fast.
    with ProcScan.of("rotated-secret-", "mutual-secret-") as scan:
        for s, m in zip(secrets, mutual, strict=True):
            rig.backend.apply(SetAuth(None, Chap("sbps-node", Secret(s), "sbps-target",
                                                 Secret(m)), reason="rotate"))
    assert scan.sweeps > 0
    assert scan.leaks == []
    # The last rotation is live: a login with it works, with the one before it fails.
    with rig.session(7, user="sbps-node", secret=secrets[-1], target_user="sbps-target",
                     target_secret=mutual[-1]) as s:
        assert s.call("read", 0, 1, 512)[:4] == b"hsqs"


def test_the_scan_catches_a_secret_on_tgtadms_command_line(tgtd: Tgtd) -> None:
    """Negative control: the old way (``tgtadm --password``) is caught by the same scan,
    within a bounded number of tries."""
    secret = "leaked-on-argv-000001"
    with ProcScan.of(secret) as scan:
        for _ in range(200):
            tgtd.admin("--mode", "account", "--op", "new", "--user", "leak", "--password",
                       secret)
            tgtd.admin("--mode", "account", "--op", "delete", "--user", "leak")
            if scan.leaks:
                break
    assert scan.leaks and scan.leaks[0].where == "cmdline"


class ProbingTgtadm(Tgtadm):
    """The real Tgtadm; right after tgtd made a LUN (``--op new``) and before the backend's
    next request, an initiator asks that LUN for MODE SENSE and tries to WRITE to it."""

    def __init__(self, control_port: int) -> None:
        super().__init__("tgtadm", control_port)
        self.session: RemoteSession | None = None
        self.seen: list[tuple[Sense, bytes, Sense, Sense]] = []

    def __call__(self, args: Sequence[str], *, operation: str, obj: str) -> str:
        out = super().__call__(args, operation=operation, obj=obj)
        if self.session is not None and "logicalunit" in args and "new" in args:
            lun = int(args[list(args).index("--lun") + 1])
            self.seen.append(self.probe(self.session, lun))
        return out

    @staticmethod
    def probe(session: RemoteSession, lun: int) -> tuple[Sense, bytes, Sense, Sense]:
        mode_sense = bytes([0x1A, 0, 0x3F, 0, 192, 0])
        write = bytes([0x8A, 0]) + struct.pack(">QI", 0, 1) + bytes(2)
        for _ in range(5):  # tgt raises REPORTED LUNS DATA HAS CHANGED once per session
            sense, data = session.call("command", mode_sense, 192, b"", lun)
            if sense.key != UNIT_ATTENTION:
                break
        ready, _ = session.call("command", bytes(6), 0, b"", lun)  # TEST UNIT READY
        wrote, _ = session.call("command", write, 0, b"\xa5" * 512, lun)
        return sense, data, ready, wrote


def test_a_new_lun_is_never_writable(tgtd: Tgtd, cache_dir: Path,
                                     squashfs_image: Callable[..., BuiltImage]) -> None:
    rig = Rig(tgtd, cache_dir, squashfs_image)
    adm = ProbingTgtadm(tgtd.control_port)
    rig.adm = adm  # type: ignore[assignment]
    rig.backend.tgtadm = adm
    rig.image("rootfs-a", 7)
    rig.converge()
    with rig.session(7) as s:
        adm.session = s
        for lun in (9, 10, 11):
            img, _, path = rig.image(f"rootfs-{lun}", lun)
            before = Path(path).read_bytes()[:512]
            rig.converge()
            mode, data, ready, wrote = adm.seen[-1]
            # In the window: write-protected, or no medium at all (tgt answers MODE SENSE
            # with WP=0 for an absent medium: there is nothing to protect) ...
            no_medium = (ready.key, ready.ascq) == (NOT_READY, 0x3A00)
            assert no_medium or (mode.status == GOOD and data[2] & 0x80), \
                (lun, mode, data[:4].hex(), ready)
            # ... and a WRITE is refused.
            assert wrote.status != GOOD and wrote.key in (NOT_READY, DATA_PROTECT), wrote
            assert Path(path).read_bytes()[:512] == before
            # Once made: read-only, with its identity, serving the image.
            with rig.session(lun) as done:
                assert done.call("serial") == img.identity.serial
                assert done.call("write_probe").key == DATA_PROTECT
        assert len(adm.seen) == 3
    assert IQN in tgtd.admin("--mode", "target", "--op", "show").stdout
