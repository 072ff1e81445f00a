"""Access control on tgt with a real initiator (libiscsi) on loopback: the policy read from
real files by ``AccessSource``, planned by the real ``plan()``, applied to a real tgtd.

An allowed initiator logs in and reads; a disallowed IQN cannot log in; a wrong CHAP secret
(or a target that fails mutual CHAP) cannot log in; a write is refused; CHAP secrets never
reach the log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from sbps.config import TargetConfig
from sbps.core.actions import Plan, SetAuth
from sbps.core.target_state import Portal
from sbps.reconcile.plan import PlanInput, plan
from sbps.target.access.files import AccessSource
from tests.fixtures.images import BuiltImage
from tests.fixtures.iscsi import DATA_PROTECT, InitiatorError
from tests.fixtures.tgt import Tgtd
from tests.integration.test_tgt_backend import Rig

ALLOWED = "iqn.2024-01.test.sbps:allowed"
STRANGER = "iqn.2024-01.test.sbps:stranger"
SECRET, MUTUAL_SECRET = "tgt-chap-secret-77", "tgt-proves-itself-8"


class AccessRig(Rig):
    def __init__(self, tgtd: Tgtd, cache: Path, build: Callable[..., BuiltImage],
                 tmp: Path, **target: object) -> None:
        super().__init__(tgtd, cache, build)
        self.source = AccessSource(TargetConfig(backend="tgt", **target))  # type: ignore[arg-type]

    def plan(self, retire_due: frozenset[str] = frozenset(), *desired: str) -> Plan:
        want = tuple(self.images[n][0] for n in (desired or self.images))
        access, attributes = self.source.current(want)
        return plan(PlanInput(
            desired=want, target=self.backend.read(), cache_dir=str(self.cache),
            staged={i.identity.digest: p for i, _, p in self.images.values()},
            claims=self.claims, portals=frozenset({Portal("127.0.0.1", self.tgtd.port)}),
            attributes=attributes, access=access, retire_due=retire_due))


def chap_files(tmp: Path) -> dict[str, str]:
    files = {}
    for key, value in (("chap_user_file", "node-user"), ("chap_secret_file", SECRET),
                       ("chap_mutual_user_file", "target-user"),
                       ("chap_mutual_secret_file", MUTUAL_SECRET)):
        path = tmp / key
        path.write_text(value + "\n")
        files[key] = str(path)
    return files


def test_allowed_reads_stranger_refused_write_refused(
        tgtd: Tgtd, cache_dir: Path, squashfs_image: Callable[..., BuiltImage],
        tmp_path: Path) -> None:
    rig = AccessRig(tgtd, cache_dir, squashfs_image, tmp_path, access="acl",
                    initiators=(ALLOWED,))
    img, built, _ = rig.image("tenantless", 5)
    first = rig.converge()
    kinds = [a.kind for a in first.actions]
    assert "CreateAcl" in kinds and "MapLun" in kinds
    assert rig.plan().actions == ()
    state = rig.backend.read()
    assert [a.initiator for a in state.acls] == [ALLOWED]
    assert dict(state.attributes)["generate_node_acls"] == "0"

    with pytest.raises(InitiatorError, match="login"):
        rig.session(5, initiator=STRANGER)
    with rig.session(5, initiator=ALLOWED) as s:
        assert s.call("read", 0, 1, 512)[:4] == b"hsqs"
        refused = s.call("write_probe")
        assert (refused.key, refused.ascq) == (DATA_PROTECT, 0x2700)
    assert rig.backend.read().luns[0].index == 5 and built.size > 0
    assert img.identity.name == rig.backend.read().luns[0].storage_object


def test_chap_one_way_and_mutual(tgtd: Tgtd, cache_dir: Path,
                                 squashfs_image: Callable[..., BuiltImage], tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:
    rig = AccessRig(tgtd, cache_dir, squashfs_image, tmp_path, access="acl",
                    initiators=(ALLOWED,), **chap_files(tmp_path))
    rig.image("guarded", 3)
    with caplog.at_level(logging.DEBUG):
        first = rig.converge()
        assert rig.plan().actions == ()
    # The target's account, then the ACL's (on tgt the same credentials: a check only).
    assert [a.initiator for a in first.actions if isinstance(a, SetAuth)] == [None, ALLOWED]
    state = rig.backend.read()
    assert dict(state.attributes)["authentication"] == "1"
    assert (state.chap.user, state.chap.mutual_user) == ("node-user", "target-user")

    def login(**kw: str) -> bytes:
        with rig.session(3, initiator=ALLOWED, **kw) as s:
            data: bytes = s.call("read", 0, 1, 512)
            return data

    with pytest.raises(InitiatorError, match="login"):
        login()
    with pytest.raises(InitiatorError, match="login"):
        login(user="node-user", secret="not-the-secret-1")
    assert login(user="node-user", secret=SECRET)[:4] == b"hsqs"
    assert login(user="node-user", secret=SECRET, target_user="target-user",
                 target_secret=MUTUAL_SECRET)[:4] == b"hsqs"
    with pytest.raises(InitiatorError, match="login"):
        login(user="node-user", secret=SECRET, target_user="target-user",
              target_secret="impostor-secret-9")
    with pytest.raises(InitiatorError, match="login"):
        rig.session(3, initiator=STRANGER, user="node-user", secret=SECRET)
    for secret in (SECRET, MUTUAL_SECRET):
        assert secret not in caplog.text, "a CHAP secret reached the log"
        assert secret not in tgtd.admin("--mode", "target", "--op", "show").stdout

    # Rotation: the file changes, the next pass re-creates the account.
    (tmp_path / "chap_secret_file").write_text("rotated-secret-123\n")
    assert [a.kind for a in rig.converge().actions] == ["SetAuth", "SetAuth"]
    assert login(user="node-user", secret="rotated-secret-123")[:4] == b"hsqs"
    with pytest.raises(InitiatorError, match="login"):
        login(user="node-user", secret=SECRET)


def test_tenants_are_a_config_error_on_tgt(tmp_path: Path) -> None:
    from sbps.config import load
    from sbps.core.errors import ConfigError

    with pytest.raises(ConfigError) as bad:
        load(None, env={"SBPS_MARSHAL_TARGET_BACKEND": "tgt",
                        "SBPS_MARSHAL_TARGET_ACCESS": "acl",
                        "SBPS_MARSHAL_TARGET_INITIATORS": ALLOWED,
                        "SBPS_MARSHAL_TARGET_TENANT_MAP_FILE": str(tmp_path / "t.toml")})
    assert bad.value.key == "target.tenant_map_file"
    assert "cannot mask LUNs per initiator" in str(bad.value)
