"""The tgt backend against a real tgtd, checked by a real initiator (libiscsi) on loopback.

The images are real squashfs files (mksquashfs) copied into the test's cache directory the
way the stager leaves them (read-only); planning uses the real ``sbps.reconcile.plan.plan``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from sbps.config import load
from sbps.core import identity
from sbps.core.actions import (
    CreateAcl,
    CreateLun,
    CreateStorageObject,
    DeleteAcl,
    DeleteLun,
    DeleteStorageObject,
    MapLun,
    Plan,
    ReleaseClaim,
    SetAuth,
    SetTpgAttributes,
    SetTpgEnabled,
    TargetAction,
    UnmapLun,
)
from sbps.core.errors import BackendError
from sbps.core.model import DesiredImage, ImageKind, ObjectInfo, S3Url
from sbps.core.target_state import Chap, Lun, Portal, Secret, StorageObject
from sbps.reconcile.loop import OPEN_ACCESS_ATTRIBUTES
from sbps.reconcile.plan import PlanInput, plan
from sbps.target.factory import make_backend
from sbps.target.tgt.backend import TgtBackend
from sbps.target.tgt.tgtadm import Tgtadm
from tests.fixtures.images import MARKER, BuiltImage
from tests.fixtures.iscsi import (
    DATA_PROTECT,
    ILLEGAL_REQUEST,
    InitiatorError,
    InitiatorTimeout,
    RemoteSession,
    iscsi_ls,
    iscsi_ls_luns,
)
from tests.fixtures.tgt import Tgtd

IQN = "iqn.2023-06.csm.iscsi:tgt-test"
ALLOWED = "iqn.2024-01.test.sbps:node"


class CountingTgtadm(Tgtadm):
    """The real Tgtadm, remembering every operation it ran (to count writes)."""

    def __init__(self, control_port: int) -> None:
        super().__init__("tgtadm", control_port)
        self.ops: list[str] = []

    def __call__(self, args: Sequence[str], *, operation: str, obj: str) -> str:
        self.ops.append(args[list(args).index("--op") + 1])
        return super().__call__(args, operation=operation, obj=obj)

    @property
    def writes(self) -> int:
        return sum(1 for op in self.ops if op not in ("show", "stat"))


class Rig:
    """One tgtd, one backend, a cache directory and the images exported from it."""

    def __init__(self, tgtd: Tgtd, cache: Path, build: Callable[..., BuiltImage]) -> None:
        self.tgtd, self.cache, self.build = tgtd, cache, build
        self.adm = CountingTgtadm(tgtd.control_port)
        self.backend = TgtBackend(IQN, self.adm)
        self.images: dict[str, tuple[DesiredImage, BuiltImage, str]] = {}
        self.claims: dict[str, int] = {}

    def image(self, name: str, lun_id: int) -> tuple[DesiredImage, BuiltImage, str]:
        built = self.build(name)
        data = built.path.read_bytes()
        etag = hashlib.md5(data).hexdigest()
        url = S3Url("boot-images", f"{name}/rootfs")
        ident = identity.rootfs(url, etag)
        path = self.cache / ident.digest
        shutil.copyfile(built.path, path)
        path.chmod(0o444)
        img = DesiredImage(ident, ImageKind.ROOTFS, ObjectInfo(url, etag, len(data)), name)
        self.images[name] = (img, built, str(path))
        self.claims[ident.digest] = lun_id
        return self.images[name]

    def plan(self, retire_due: frozenset[str] = frozenset(), *desired: str) -> Plan:
        want = [self.images[n][0] for n in (desired or self.images)]
        return plan(PlanInput(
            desired=tuple(want), target=self.backend.read(), cache_dir=str(self.cache),
            staged={img.identity.digest: p for img, _, p in self.images.values()},
            claims=self.claims, portals=frozenset({Portal("127.0.0.1", self.tgtd.port)}),
            attributes=OPEN_ACCESS_ATTRIBUTES, retire_due=retire_due))

    def converge(self) -> Plan:
        p = self.plan()
        for action in p.actions:
            self.backend.apply(action)
        self.backend.commit()
        return p

    def session(self, lun: int, **kwargs: object) -> RemoteSession:
        return RemoteSession(self.tgtd.portal, IQN, lun, timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def rig(tgtd: Tgtd, cache_dir: Path, squashfs_image: Callable[..., BuiltImage]) -> Rig:
    return Rig(tgtd, cache_dir, squashfs_image)


def test_converge_from_empty_then_a_real_initiator_boots_from_it(rig: Rig,
                                                                 tmp_path: Path) -> None:
    img, built, path = rig.image("rootfs-a", 7)
    first = rig.converge()
    assert [a.kind for a in first.actions] == ["CreateTarget", "SetTpgAttributes",
                                               "CreateStorageObject", "CreateLun",
                                               "SetTpgEnabled"]

    writes = rig.adm.writes
    second = rig.plan()
    assert second.actions == ()
    assert rig.adm.writes == writes, "reading and planning a converged target wrote to it"

    assert iscsi_ls(rig.tgtd.portal) == (IQN,)
    luns = iscsi_ls_luns(rig.tgtd.portal)[IQN]
    found = {}
    for lun in luns:
        with rig.session(lun) as s:
            if lun != 0:
                found[s.call("serial")] = lun
    assert found == {img.identity.serial: 7}

    copy = tmp_path / "read-back.squashfs"
    with rig.session(7) as s:
        assert s.call("inquiry") == ("LIO-ORG", img.identity.product_id)
        blocks, size = s.call("capacity")
        assert blocks * size == built.size
        digest, nbytes = s.call("read_all", 256, str(copy))
        assert (digest, nbytes) == (hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                                    built.size)
        refused = s.call("write_probe")
        assert (refused.key, refused.ascq) == (DATA_PROTECT, 0x2700)
        designators = s.call("designators")
        # One rule for both backends: the WWID a kernel initiator derives is LIO's.
        assert s.call("wwid") == img.identity.wwid, designators
        assert ("6001405" + img.identity.serial[:25]) in [d.value for d in designators
                                                           if d.type == 3]
        assert rig.backend.sessions() == ("iqn.2024-01.test.sbps:initiator",)
    unpacked = tmp_path / "unpacked"
    subprocess.run(["unsquashfs", "-no-progress", "-d", str(unpacked), str(copy)],
                   check=True, capture_output=True, timeout=60)
    assert (unpacked / MARKER).read_text() == built.marker
    assert Path(path).read_bytes() == built.path.read_bytes(), "the cache file changed"


def test_a_lun_made_with_the_legacy_mark_stays_ours_and_is_kept(rig: Rig) -> None:
    """LUNs made before the NAA rule (``scsi_id`` = name, tgt's own NAA WWID): recognised
    under the same name, kept as they are while planned (no action touches them), and a
    LUN made again gets LIO's WWID."""
    img, _, path = rig.image("legacy", 5)
    rig.converge()
    tid = str(next(t.tid for t in rig.adm.show() if t.name == IQN))
    rig.adm(["--mode", "logicalunit", "--op", "delete", "--tid", tid, "--lun", "5"],
            operation="test", obj="LUN 5")
    ident = img.identity
    rig.adm(["--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", "5",
             "--bstype", "rdwr"], operation="test", obj="LUN 5")
    rig.adm(["--mode", "logicalunit", "--op", "update", "--tid", tid, "--lun", "5",
             "--params", f"readonly=1,removable=0,vendor_id=LIO-ORG,product_id={ident.name},"
             f"scsi_id={ident.name},scsi_sn={ident.serial},path={path}"],
            operation="test", obj="LUN 5")
    state = rig.backend.read()
    assert [(lun.index, lun.storage_object) for lun in state.luns] == [(5, ident.name)]
    assert rig.plan().actions == (), "a legacy-marked LUN was touched"
    with rig.session(5) as s:
        legacy_wwid = s.call("wwid")
    assert legacy_wwid.startswith("36") and legacy_wwid != ident.wwid, legacy_wwid

    rig.backend.apply(DeleteLun(index=5, reason="test"))
    rig.converge()
    with rig.session(5) as s:
        assert s.call("wwid") == ident.wwid


def test_lun_ids_land_where_requested_and_high_ids_are_flat(rig: Rig) -> None:
    for name, lun_id in (("one", 1), ("seventeen", 17), ("top", 255)):
        rig.image(name, lun_id)
    rig.converge()
    assert rig.plan().actions == ()
    assert iscsi_ls_luns(rig.tgtd.portal)[IQN] == (0, 1, 17, 255)
    for name, lun_id in (("one", 1), ("seventeen", 17), ("top", 255)):
        with rig.session(lun_id) as s:
            assert s.call("serial") == rig.images[name][0].identity.serial

    # Above 255 tgt answers in flat space: the initiator must address 16384 + id.
    img, _, path = rig.image("high", 300)
    rig.backend.apply(CreateStorageObject(_storage(img, path), reason="test"))
    rig.backend.apply(CreateLun(Lun(300, img.identity.name), reason="test"))
    assert 300 in rig.backend.read().lun_by_index()
    assert iscsi_ls_luns(rig.tgtd.portal)[IQN] == (0, 1, 17, 255, 16384 + 300)
    with rig.session(16384 + 300) as s:
        assert s.call("serial") == img.identity.serial


def test_delete_lun_while_an_initiator_is_logged_in(rig: Rig) -> None:
    img, built, _ = rig.image("retired", 3)
    rig.converge()
    with rig.session(3) as s:
        assert s.call("read", 0, 1, 512)[:4] == b"hsqs"
        due = plan(PlanInput(desired=(), target=rig.backend.read(),
                             cache_dir=str(rig.cache), claims=rig.claims,
                             portals=frozenset({Portal("127.0.0.1", rig.tgtd.port)}),
                             attributes=OPEN_ACCESS_ATTRIBUTES,
                             retire_due=frozenset({img.identity.name})))
        assert [type(a) for a in due.actions][:2] == [DeleteLun, DeleteStorageObject]
        for action in due.actions:
            if isinstance(action, (DeleteLun, DeleteStorageObject)):
                rig.backend.apply(action)
        # The session survives; its commands to the deleted LUN fail at once, sanely.
        sense, _ = s.call("command", bytes([0x88, 0]) + bytes(8) + b"\0\0\0\1" + bytes(2),
                          512)
        assert (sense.status, sense.key, sense.ascq) == (2, ILLEGAL_REQUEST, 0x2500)
        assert rig.backend.sessions() == ("iqn.2024-01.test.sbps:initiator",)
    assert rig.backend.read().luns == ()


def _storage(img: DesiredImage, path: str) -> StorageObject:
    ident = img.identity
    return StorageObject(ident.name, path, img.source.size, ident.serial, ident.product_id)


def test_stats_grow_with_reads_and_do_not_fall_at_logout(rig: Rig) -> None:
    img, built, _ = rig.image("counted", 4)
    rig.converge()
    idle = rig.backend.stats()
    assert set(idle) == {4}
    assert (idle[4].read_bytes, idle[4].commands) == (0, 0)
    with rig.session(4) as s:
        s.call("read_all")
        during = rig.backend.stats()[4]
        assert during.read_bytes >= built.size
        assert during.commands >= 1
    after = rig.backend.stats()[4]
    assert (after.read_bytes, after.commands) == (during.read_bytes, during.commands)
    assert rig.backend.sessions() == ()
    with rig.session(4) as s:
        s.call("read", 0, 1, 512)
        assert rig.backend.stats()[4].read_bytes == during.read_bytes + 512


def test_foreign_targets_and_luns_are_reported_and_left_alone(rig: Rig,
                                                              tmp_path: Path) -> None:
    other = tmp_path / "other.img"
    other.write_bytes(bytes(1 << 20))
    adm = rig.tgtd.admin
    assert adm("--mode", "target", "--op", "new", "--tid", "1", "--targetname",
               "iqn.2001-04.com.example:foreign").returncode == 0
    assert adm("--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1",
               "--backing-store", str(other)).returncode == 0
    assert adm("--mode", "target", "--op", "bind", "--tid", "1", "--initiator-address",
               "10.9.9.9").returncode == 0
    before = [t for t in rig.adm.show() if t.tid == 1]

    img, _, _ = rig.image("mine", 2)
    first = rig.converge()
    assert "iqn.2001-04.com.example:foreign" in [n.subject for n in first.notes]
    tid = next(t.tid for t in rig.adm.show() if t.name == IQN)
    # An admin adds a LUN of their own to our target: reported, not owned, not touched.
    assert adm("--mode", "logicalunit", "--op", "new", "--tid", str(tid), "--lun", "9",
               "--backing-store", str(other)).returncode == 0

    state = rig.backend.read()
    assert state.foreign == ("iqn.2001-04.com.example:foreign",)
    assert state.lun_by_index()[9].storage_object == "tgt-lun9"
    assert rig.plan().actions == ()
    retire_all = plan(PlanInput(desired=(), target=state, cache_dir=str(rig.cache),
                                claims=rig.claims, attributes=OPEN_ACCESS_ATTRIBUTES,
                                portals=frozenset({Portal("127.0.0.1", rig.tgtd.port)}),
                                retire_due=frozenset({img.identity.name, "tgt-lun9"})))
    for action in retire_all.actions:
        if not isinstance(action, ReleaseClaim):
            rig.backend.apply(action)
    assert [lun.index for lun in rig.backend.read().luns] == [9]
    assert [t for t in rig.adm.show() if t.tid == 1] == before


def test_access_offline_acl_and_chap(rig: Rig) -> None:
    rig.image("guarded", 1)
    rig.converge()
    rig.backend.apply(SetTpgEnabled(False, reason="gate closed"))
    assert not rig.backend.read().tpg_enabled
    with pytest.raises(InitiatorError, match="login"):
        rig.session(1)
    rig.backend.apply(SetTpgEnabled(True, reason="gate open"))

    chap = Chap("sbpsnode", Secret("s3cret-not-logged-42"))
    rig.backend.apply(SetAuth(None, chap, reason="CHAP on"))
    rig.backend.apply(SetTpgAttributes((("authentication", "1"),), reason="CHAP on"))
    state = rig.backend.read()
    assert dict(state.attributes)["authentication"] == "1" and state.chap == chap
    with pytest.raises(InitiatorError, match="login"):
        rig.session(1)
    with pytest.raises(InitiatorError, match="login"):
        rig.session(1, user="sbpsnode", secret="wrong-secret-123")
    with rig.session(1, user="sbpsnode", secret="s3cret-not-logged-42") as s:
        assert s.call("serial") == rig.images["guarded"][0].identity.serial
    assert "s3cret" not in rig.tgtd.admin("--mode", "target", "--op", "show").stdout

    rig.backend.apply(SetTpgAttributes((("authentication", "0"), ("generate_node_acls", "0")),
                                       reason="ACL mode"))
    rig.backend.apply(CreateAcl("iqn.2024-01.test.sbps:other", reason="allowed"))
    assert rig.backend.read().attributes == (
        ("authentication", "0"), ("cache_dynamic_acls", "0"),
        ("demo_mode_write_protect", "1"), ("generate_node_acls", "0"),
        ("prod_mode_write_protect", "1"))
    with pytest.raises(InitiatorError, match="login"):
        rig.session(1)
    with rig.session(1, initiator="iqn.2024-01.test.sbps:other") as s:
        assert s.call("read", 0, 1, 512)[:4] == b"hsqs"
    # Back to the reconciler's open policy: the plan sees the drift and repairs it.
    assert [a.kind for a in rig.converge().actions] == ["SetTpgAttributes", "DeleteAcl"]
    assert rig.plan().actions == ()


def test_errors_name_the_object_and_operation(rig: Rig, tmp_path: Path) -> None:
    img, _, path = rig.image("err", 5)
    with pytest.raises(BackendError) as missing_target:
        rig.backend.apply(CreateLun(Lun(5, img.identity.name), reason="test"))
    assert missing_target.value.temporary and "LUN 5" in str(missing_target.value)
    rig.converge()
    with pytest.raises(BackendError, match="no storage object") as no_so:
        rig.backend.apply(CreateLun(Lun(6, "0123456789abcde"), reason="test"))
    assert not no_so.value.temporary and no_so.value.operation == "create LUN"
    with pytest.raises(BackendError, match="taken by"):
        rig.backend.apply(CreateStorageObject(_storage(img, path), reason="test"))
        rig.backend.apply(CreateLun(Lun(5, "fedcba987654321"), reason="test"))
    bad = StorageObject("x", str(tmp_path / "absent"), 1, "s", "x")
    with pytest.raises(BackendError, match="not a regular file") as absent:
        rig.backend.apply(CreateStorageObject(bad, reason="test"))
    assert absent.value.obj == "x"
    with pytest.raises(BackendError, match="controller"):
        rig.backend.apply(CreateLun(Lun(0, img.identity.name), reason="test"))
    with pytest.raises(BackendError, match="invalid request|can't") as refused:
        rig.backend.tgtadm(["--mode", "logicalunit", "--op", "new", "--tid", "999", "--lun",
                            "1", "--backing-store", path], operation="create LUN", obj="x")
    assert not refused.value.temporary
    gone = TgtBackend(IQN, Tgtadm("tgtadm", rig.tgtd.control_port + 1000, timeout=5))
    with pytest.raises(BackendError) as unreachable:
        gone.read()
    assert unreachable.value.temporary


def test_without_the_target_every_action_on_it_waits_for_the_next_pass(rig: Rig) -> None:
    """Every action that needs this worker's target fails the same way when tgtd does not
    have it (a restarted tgtd): temporary, ``tgt_no_target``, and nothing is written."""
    img, _, path = rig.image("gone", 5)
    rig.backend.apply(CreateStorageObject(_storage(img, path), reason="test"))
    needs_target: list[TargetAction] = [
        SetTpgEnabled(True, reason="test"),
        SetTpgAttributes((("generate_node_acls", "1"),), reason="test"),
        CreateLun(Lun(5, img.identity.name), reason="test"),
        CreateAcl(ALLOWED, reason="test"), DeleteAcl(ALLOWED, reason="test"),
        MapLun(ALLOWED, 5, reason="test"), UnmapLun(ALLOWED, 5, reason="test"),
        SetAuth(None, Chap(), reason="test")]
    for action in needs_target:
        with pytest.raises(BackendError) as missing:
            rig.backend.apply(action)
        assert (missing.value.code, missing.value.temporary) == ("tgt_no_target", True), action
    # Removing from a target that is not there is already done.
    rig.backend.apply(DeleteLun(5, reason="test"))
    rig.backend.apply(DeleteStorageObject(img.identity.name, reason="test"))
    assert rig.adm.writes == 0 and rig.adm.show() == ()


def test_make_backend_from_configuration(tgtd: Tgtd) -> None:
    cfg = load(None, env={"SBPS_MARSHAL_TARGET_BACKEND": "tgt",
                          "SBPS_MARSHAL_TARGET_TGT_CONTROL_PORT": str(tgtd.control_port)}).config
    backend = make_backend(cfg, IQN)
    assert backend.name == "tgt"
    assert backend.read().portals == frozenset({Portal("127.0.0.1", tgtd.port)})


def test_a_stalled_target_cannot_hang_the_initiator(rig: Rig) -> None:
    rig.image("stall", 1)
    rig.converge()
    s = rig.session(1)
    try:
        os.kill(rig.tgtd.pid, signal.SIGSTOP)
        try:
            with pytest.raises(InitiatorTimeout):
                s.call("read", 0, 1, 512, timeout=2)
        finally:
            os.kill(rig.tgtd.pid, signal.SIGCONT)
    finally:
        s.close()
    with rig.session(1) as again:
        assert again.call("read", 0, 1, 512)[:4] == b"hsqs"
