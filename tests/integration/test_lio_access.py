"""Access control on the LIO backend (PyPI rtslib-fb, configfs emulation): node ACLs and
mapped LUNs as the tenant map says, CHAP on every ACL (never logged), write-protected
mappings, revocation, and zero writes once converged. The policy is read from real files
by ``AccessSource``; planning is the real ``sbps.reconcile.plan.plan``."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from configfs import Mounted, mounted
from configfs.control import ControlError
from configfs.rtslib_compat import restore_rtslib
from sbps.config import TargetConfig
from sbps.core.model import DesiredImage
from sbps.core.target_state import MappedLun, NodeAcl, TargetState
from sbps.reconcile.plan import PlanInput, plan
from sbps.target.access.files import AccessSource
from sbps.target.lio.backend import LioBackend
from tests.integration import lio_scenarios as sc

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                       reason="needs root and /dev/fuse"),
]

RED = "iqn.2024-01.test.node:x1000c0s0b0n0"
RED2 = "iqn.2024-01.test.node:x1000c0s1b0n0"
BLUE = "iqn.2024-01.test.node:x3000c0s0b0n0"
OPS = "iqn.2024-01.test.ops:admin"
SECRET, MUTUAL_SECRET, BLUE_SECRET = "red-chap-secret-42", "target-proves-it-7", "blue-secret-0001"


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Mounted]:
    from rtslib_fb import fabric, node, root

    saved = {"configfs_dir": node.CFSNode.configfs_dir, "mount_configfs": root.mount_configfs,
             "root.modprobe": root.modprobe, "fabric.modprobe": fabric.modprobe,
             "preferred_dbroot": root.RTSRoot._preferred_dbroot}
    try:
        with mounted() as handle:
            yield handle
    finally:
        restore_rtslib(saved)


class Rig:
    def __init__(self, mount: Mounted, tmp: Path) -> None:
        self.env = sc.Env(mount.root, mount.control_path, str(tmp / "work"))
        self.tmp = tmp
        for name, value in (("user", "sbps-node"), ("secret", SECRET), ("muser", "sbps-target"),
                            ("msecret", MUTUAL_SECRET), ("blue.user", "blue-node"),
                            ("blue.secret", BLUE_SECRET)):
            (tmp / name).write_text(value + "\n")
        self.map = tmp / "tenants.toml"
        self.write_map({"red": ["iqn.2024-01.test.node:x1000*"], "blue": [BLUE]})
        cfg = TargetConfig(configfs_root=os.path.join(mount.root, "target"),
                           saveconfig_path=self.env.saveconfig, access="acl",
                           initiators=(OPS,), tenant_map_file=str(self.map),
                           chap_user_file=str(tmp / "user"), chap_secret_file=str(tmp / "secret"),
                           chap_mutual_user_file=str(tmp / "muser"),
                           chap_mutual_secret_file=str(tmp / "msecret"))
        self.backend = LioBackend(cfg, self.env.cache_dir, sc.IQN)
        self.source = AccessSource(cfg)
        self.images = {"red": replace(sc.image(1), tenant="red"),
                       "blue": replace(sc.image(2), tenant="blue"), "shared": sc.image(3)}
        self.luns = {"red": 11, "blue": 22, "shared": 33}
        self.claims = {self.images[k].identity.digest: v for k, v in self.luns.items()}

    def write_map(self, tenants: dict[str, list[str]], stamp: int = 1) -> None:
        lines = [f'nodes = ["{RED}", "{RED2}"]']
        for name, initiators in tenants.items():
            lines.append(f"[tenants.{name}]")
            lines.append("initiators = [" + ", ".join(f'"{i}"' for i in initiators) + "]")
            if name == "blue":
                lines += ['chap_user_file = "blue.user"', 'chap_secret_file = "blue.secret"']
        self.map.write_text("\n".join(lines) + "\n")
        os.utime(self.map, ns=(stamp, stamp))

    def plan_input(self) -> PlanInput:
        desired = tuple(self.images.values())
        access, attributes = self.source.current(desired)
        return PlanInput(desired=desired, target=self.backend.read(),
                         cache_dir=self.env.cache_dir, staged=sc.stage(self.env, desired),
                         claims=self.claims,
                         portals=sc.PORTALS, attributes=attributes, access=access)

    def converge(self) -> list[str]:
        kinds: list[str] = []
        for _ in range(3):
            actions = plan(self.plan_input()).actions
            if not actions:
                break
            assert sc.run(self.backend, actions) == {}
            kinds += [a.kind for a in actions]
        return kinds

    def acls(self) -> dict[str, NodeAcl]:
        return self.backend.read().acl_by_initiator()

    def attr(self, *parts: str) -> str:
        path = os.path.join(self.env.mount, "target", "iscsi", sc.IQN, "tpgt_1", *parts)
        return Path(path).read_text().strip()


@pytest.fixture
def rig(mount: Mounted, tmp_path: Path) -> Rig:
    return Rig(mount, tmp_path)


def mapped(acl: NodeAcl) -> set[int]:
    return {m.index for m in acl.luns}


def test_acls_map_only_each_tenants_images_with_chap(rig: Rig,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        kinds = rig.converge()
    assert kinds.count("CreateAcl") == 4 and kinds.count("SetAuth") == 5
    acls = rig.acls()
    assert set(acls) == {RED, RED2, BLUE, OPS}
    assert mapped(acls[RED]) == mapped(acls[RED2]) == {11, 33}
    assert mapped(acls[BLUE]) == {22, 33}, "blue sees its own and the shared image only"
    assert 11 not in mapped(acls[BLUE]) and 22 not in mapped(acls[RED])
    assert mapped(acls[OPS]) == {33}
    for acl in acls.values():
        assert acl.owned and all(m == MappedLun(m.index, m.index, True) for m in acl.luns)
        assert rig.attr("acls", acl.initiator, "tag") == "sbps"
        for m in acl.luns:
            assert rig.attr("acls", acl.initiator, f"lun_{m.index}", "write_protect") == "1"

    # CHAP: one-way and mutual from the target-wide files, blue's own from the tenant map.
    assert rig.attr("acls", RED, "auth", "userid") == "sbps-node"
    assert rig.attr("acls", RED, "auth", "password") == SECRET
    assert rig.attr("acls", RED, "auth", "userid_mutual") == "sbps-target"
    assert rig.attr("acls", RED, "auth", "password_mutual") == MUTUAL_SECRET
    assert rig.attr("acls", RED, "auth", "authenticate_target") == "1"
    assert rig.attr("acls", BLUE, "auth", "userid") == "blue-node"
    assert rig.attr("acls", BLUE, "auth", "password") == BLUE_SECRET
    for key, value in (("generate_node_acls", "0"), ("authentication", "1"),
                       ("demo_mode_write_protect", "1"), ("cache_dynamic_acls", "0")):
        assert rig.attr("attrib", key) == value
    for secret in (SECRET, MUTUAL_SECRET, BLUE_SECRET):
        assert secret not in caplog.text, "a CHAP secret reached the log"
        assert secret not in repr(rig.backend.read())
    assert "CHAP set: CHAP user sbps-node, mutual user sbps-target" in caplog.text
    save = Path(rig.env.saveconfig)
    assert save.stat().st_mode & 0o077 == 0, "saveconfig.json holds CHAP secrets: 0600"
    saved = json.loads(save.read_text())
    tpg = saved["targets"][0]["tpgs"][0]
    assert {a["node_wwn"] for a in tpg["node_acls"]} == {RED, RED2, BLUE, OPS}

    # A converged target: a pass plans nothing and writes nothing.
    ctl = rig.env.ctl()
    ctl.reset_counters()
    assert plan(rig.plan_input()).actions == ()
    assert ctl.writes() == 0

    # Logins: an allowed initiator gets a session; a stranger is refused (no ACL, and no
    # generated ACLs); the read counters of a mapped LUN grow for the allowed one.
    ctl.add_session(sc.IQN, RED)
    with pytest.raises(ControlError, match="login refused"):
        ctl.add_session(sc.IQN, "iqn.2024-01.test.node:stranger")
    assert RED in rig.backend.sessions()


def test_revocation_tenant_change_and_secret_rotation(rig: Rig) -> None:
    rig.converge()
    # Blue loses access in the map another system writes; red's image moves to blue.
    rig.write_map({"red": ["iqn.2024-01.test.node:x1000*"]}, stamp=2)
    rig.images["red"] = replace(rig.images["red"], tenant="blue")
    (rig.tmp / "secret").write_text("rotated-secret-99\n")
    p = plan(rig.plan_input())
    kinds = {(a.kind, getattr(a, "initiator", None)) for a in p.actions}
    assert ("DeleteAcl", BLUE) in kinds
    assert ("UnmapLun", RED) in kinds and ("SetAuth", RED) in kinds
    assert sc.run(rig.backend, p.actions) == {}
    acls = rig.acls()
    assert set(acls) == {RED, RED2, OPS}
    assert mapped(acls[RED]) == {33}, "an image that changed tenant is unmapped at once"
    assert rig.attr("acls", RED, "auth", "password") == "rotated-secret-99"
    assert plan(rig.plan_input()).actions == ()


def test_retiring_lun_stays_mapped_until_due(rig: Rig) -> None:
    rig.converge()
    gone = rig.images.pop("shared")
    inp = rig.plan_input()
    assert [a.kind for a in plan(inp).actions] == [], "retiring: mappings stay"
    due = plan(replace(inp, retire_due=frozenset({gone.identity.name})))
    assert [a.kind for a in due.actions][:5] == ["UnmapLun"] * 4 + ["DeleteLun"]
    assert sc.run(rig.backend, [a for a in due.actions if a.kind != "ReleaseClaim"]) == {}
    state: TargetState = rig.backend.read()
    assert 33 not in state.lun_by_index()
    assert all(33 not in mapped(a) for a in state.acls)


def test_open_mode_removes_sbps_acls_but_not_an_admins(rig: Rig) -> None:
    rig.converge()
    from rtslib_fb import NodeACL

    # An admin adds an ACL of their own (not tagged sbps).
    tpg = next(t for t in rig.backend._root().tpgs if t.parent_target.wwn == sc.IQN)
    NodeACL(tpg, "iqn.2024-01.test.admin:own", "create")
    opened = AccessSource(replace(rig.backend.config, access="open"))
    desired: tuple[DesiredImage, ...] = tuple(rig.images.values())
    access, attributes = opened.current(desired)
    inp = replace(rig.plan_input(), access=access, attributes=attributes)
    p = plan(inp)
    assert sorted(a.initiator for a in p.actions if a.kind == "DeleteAcl") == \
        sorted([RED, RED2, BLUE, OPS])
    assert any(n.code == "foreign_acl" for n in p.notes)
    assert sc.run(rig.backend, p.actions) == {}
    assert set(rig.acls()) == {"iqn.2024-01.test.admin:own"}
    assert rig.attr("attrib", "generate_node_acls") == "1"
    assert rig.attr("attrib", "demo_mode_write_protect") == "1"
