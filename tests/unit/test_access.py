"""The access policy: tenants, patterns, allowed(), the ACL spec, the tenant map and CHAP
files, and the configuration checks that go with them."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest

from sbps.config import TargetConfig, load
from sbps.core import identity
from sbps.core.errors import ConfigError
from sbps.core.model import DesiredImage, ImageKind, ObjectInfo, S3Url
from sbps.core.target_state import AccessMode
from sbps.target.access.files import AccessSource, load_tenant_map, read_chap
from sbps.target.access.policy import (
    ChapFiles,
    Policy,
    Tenant,
    TenantMap,
    allowed,
    initiators,
    spec,
)

RED = "iqn.2024-01.node:x1000c0s0b0n0"
RED2 = "iqn.2024-01.node:x1000c0s1b0n0"
BLUE = "iqn.2024-01.node:x3000c0s0b0n0"
OPS = "iqn.2024-01.ops:admin"


def visible(images: Iterable[DesiredImage], initiator: str | None,
            policy: Policy) -> tuple[DesiredImage, ...]:
    """The images ``initiator`` may read, as the catalog API lists them for it."""
    return tuple(img for img in images if allowed(policy, img.tenant, initiator))


def image(name: str, tenant: str | None) -> DesiredImage:
    url = S3Url("boot-images", f"{name}/rootfs")
    return DesiredImage(identity.rootfs(url, "e"), ImageKind.ROOTFS, ObjectInfo(url, "e", 1),
                        name, tenant=tenant)


RED_IMG, BLUE_IMG, SHARED, STRAY = (image("r", "red"), image("b", "blue"),
                                    image("s", None), image("x", "nobody"))
ALL = (RED_IMG, BLUE_IMG, SHARED, STRAY)
TENANTS = TenantMap({"red": Tenant("red", ("iqn.2024-01.node:x1000*",)),
                     "blue": Tenant("blue", (BLUE,))}, nodes=(RED, RED2, BLUE))
POLICY = Policy(AccessMode.ACL, initiators=(OPS,), tenants=TENANTS)


@pytest.mark.parametrize(("policy", "who", "names"), [
    (POLICY, RED, {"r", "s"}),
    (POLICY, BLUE, {"b", "s"}),
    (POLICY, OPS, {"s"}),
    (POLICY, "iqn.2024-01.node:X1000C0S9B0N0", {"r", "s"}),  # names are case-insensitive
    (POLICY, "iqn.2024-01.evil:x", set()),
    (POLICY, None, set()),
    (replace(POLICY, untenanted_shared=False), RED, {"r"}),
    (Policy(), None, {"r", "b", "s", "x"}),
    (replace(POLICY, masking=False), BLUE, {"r", "b", "s", "x"}),
], ids=["red", "blue", "untenanted-only", "case", "stranger", "anonymous", "listed",
        "open", "tgt-no-masking"])
def test_visible(policy: Policy, who: str | None, names: set[str]) -> None:
    assert {i.name for i in visible(ALL, who, policy)} == names


def test_prefixes_expand_against_known_nodes_for_acls() -> None:
    assert initiators(POLICY) == (RED, RED2, BLUE, OPS)
    assert initiators(replace(POLICY, tenants=replace(TENANTS, nodes=()))) == (BLUE, OPS)


def test_spec_maps_each_initiator_to_its_tenants_images() -> None:
    s = spec(POLICY, ALL, {})
    images = {a.initiator: {n[:1] for n in a.images} for a in s.acls}
    names = {i.identity.name[:1]: i.name for i in ALL}
    assert {k: {names[n] for n in v} for k, v in images.items()} == {
        RED: {"r", "s"}, RED2: {"r", "s"}, BLUE: {"b", "s"}, OPS: {"s"}}
    assert not allowed(POLICY, "nobody", RED)


def test_spec_chap_per_tenant_and_conflicts(tmp_path: Path) -> None:
    files = _chap_files(tmp_path, "red", "red-secret-123")
    default = _chap_files(tmp_path, "all", "all-secret-123")
    red = replace(TENANTS.tenants["red"], chap=files)
    pol = replace(POLICY, tenants=replace(TENANTS, tenants={**TENANTS.tenants, "red": red}),
                  chap=default)
    creds = {files: read_chap(files), default: read_chap(default)}
    s = spec(pol, ALL, creds)
    users = {a.initiator: a.chap.user for a in s.acls}
    assert users == {RED: "red", RED2: "red", BLUE: "all", OPS: "all"}
    with pytest.raises(ConfigError, match="LIO requires CHAP of every ACL"):
        spec(replace(pol, chap=None), ALL, creds)
    both = Tenant("dup", (RED,), _chap_files(tmp_path, "dup", "dup-secret-123"))
    clash = replace(pol, tenants=replace(pol.tenants, tenants={**pol.tenants.tenants,
                                                                "dup": both}))
    with pytest.raises(ConfigError, match="different CHAP"):
        spec(clash, ALL, {**creds, both.chap: read_chap(both.chap)})  # type: ignore[index]


def _chap_files(tmp_path: Path, user: str, secret: str, mutual: str = "") -> ChapFiles:
    d = tmp_path / user
    d.mkdir(exist_ok=True)
    (d / "user").write_text(user + "\n")
    (d / "secret").write_text(secret + "\n")
    if mutual:
        (d / "muser").write_text("target\n")
        (d / "msecret").write_text(mutual + "\n")
        return ChapFiles(str(d / "user"), str(d / "secret"), str(d / "muser"),
                         str(d / "msecret"))
    return ChapFiles(str(d / "user"), str(d / "secret"))


def test_read_chap_validates_and_never_shows_the_secret(tmp_path: Path) -> None:
    chap = read_chap(_chap_files(tmp_path, "u", "sup3r-secret-value", "mutual-secret-1"))
    assert (chap.user, chap.mutual_user) == ("u", "target")
    assert chap.secret is not None and chap.secret.reveal() == "sup3r-secret-value"
    assert "sup3r" not in repr(chap) and "mutual-secret" not in f"{chap} {chap.secret}"
    for secret in ("short", "has a space in it"):
        with pytest.raises(ConfigError) as bad:
            read_chap(_chap_files(tmp_path, "v", secret))
        assert secret not in str(bad.value) and "secret" in str(bad.value)
    with pytest.raises(ConfigError, match="must differ"):
        read_chap(_chap_files(tmp_path, "w", "same-secret-12", "same-secret-12"))
    with pytest.raises(ConfigError, match="cannot read"):
        read_chap(ChapFiles(str(tmp_path / "absent"), str(tmp_path / "absent")))


MAP = """
nodes = ["iqn.2024-01.node:x1000c0s0b0n0"]
[tenants.red]
initiators = ["iqn.2024-01.node:x1000*"]
chap_user_file = "red.user"
chap_secret_file = "red.secret"
"""


def test_tenant_map_toml_and_json(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(MAP)
    m = load_tenant_map(str(path))
    assert m.nodes == (RED,)
    red = m.tenants["red"]
    assert red.initiators == ("iqn.2024-01.node:x1000*",)
    assert red.chap is not None and red.chap.user_file == str(tmp_path / "red.user")
    js = tmp_path / "tenants.json"
    js.write_text(f'{{"tenants": {{"blue": {{"initiators": ["{BLUE}"]}}}}}}')
    assert load_tenant_map(str(js)).tenants["blue"].initiators == (BLUE,)
    for text, match in (('[tenants."bad name"]\ninitiators = []', "tenant name"),
                        ('[tenants.a]\ninitiators = ["10.0.0.1"]', "initiator name"),
                        ('[tenants.a]\npassword = "x"', "unknown key"),
                        ('nodes = ["iqn.x*"]', "not prefixes"), ("[[", "not valid TOML")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_tenant_map(str(path))


@pytest.mark.parametrize(("name", "text", "code"), [
    ("tenants.toml", "x = " + "[" * 100_000 + "]" * 100_000, "too_deep"),
    ("tenants.json", '{"tenants": ' + "[" * 100_000 + "]" * 100_000 + "}", "too_deep"),
    ("tenants.json", "[]", "wrong_type"),
    ("tenants.toml", "x = 1\n" + "#" * (16 * 2**20), "too_large"),
])
def test_a_hostile_tenant_map_is_a_config_error_not_a_crash(
        tmp_path: Path, name: str, text: str, code: str) -> None:
    # Issue 20 item 1: a nested tenant map raised RecursionError out of the pass.
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"\\({code}\\)"):
        load_tenant_map(str(path))


def test_access_source_rereads_on_change_and_keeps_the_last_good_map(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(f'[tenants.red]\ninitiators = ["{RED}"]\n')
    src = AccessSource(TargetConfig(access="acl", tenant_map_file=str(path)))
    access, attrs = src.current(ALL)
    assert [a.initiator for a in access.acls] == [RED]
    assert dict(attrs)["generate_node_acls"] == "0"
    path.write_text(f'[tenants.red]\ninitiators = ["{RED}", "{RED2}"]\n')
    os.utime(path, ns=(1, 1))  # a new stamp even within the clock's resolution
    assert [a.initiator for a in src.current(ALL)[0].acls] == [RED, RED2]
    assert {i.name for i in visible(ALL, RED2, src.last)} == {"r", "s"}
    path.write_text("[[ half written")
    with caplog.at_level(logging.WARNING):
        assert [a.initiator for a in src.current(ALL)[0].acls] == [RED, RED2]
    assert "keeping the last good one" in caplog.text
    fresh = AccessSource(TargetConfig(access="acl", tenant_map_file=str(path)))
    with pytest.raises(ConfigError, match="target.tenant_map_file"):
        fresh.current(ALL)


def test_chap_secrets_are_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                       ) -> None:
    files = _chap_files(tmp_path, "node", "do-not-log-this-1", "nor-this-one-2")
    cfg = TargetConfig(access="acl", initiators=(RED,), chap_user_file=files.user_file,
                       chap_secret_file=files.secret_file,
                       chap_mutual_user_file=files.mutual_user_file,
                       chap_mutual_secret_file=files.mutual_secret_file)
    with caplog.at_level(logging.DEBUG):
        access, attrs = AccessSource(cfg).current(ALL)
        logging.getLogger("test").info("spec %s %r", access, access)
    assert dict(attrs)["authentication"] == "1"
    assert access.acls[0].chap.mutual_user == "target"
    assert "do-not-log" not in caplog.text and "nor-this" not in caplog.text


@pytest.mark.parametrize(("env", "key"), [
    ({"TARGET_BACKEND": "tgt", "TARGET_ACCESS": "acl", "TARGET_INITIATORS": RED,
      "TARGET_TENANT_MAP_FILE": "/etc/sbps/tenants.toml"}, "target.tenant_map_file"),
    ({"TARGET_ACCESS": "acl"}, "target.initiators"),
    ({"TARGET_ACCESS": "acl", "TARGET_INITIATORS": "10.0.0.0/8"}, "target.initiators"),
    ({"TARGET_CHAP_USER_FILE": "/u", "TARGET_CHAP_SECRET_FILE": "/s",
      "TARGET_CHAP_MUTUAL_USER_FILE": "/mu"}, "target.chap_mutual_secret_file"),
    ({"TARGET_CHAP_MUTUAL_USER_FILE": "/mu", "TARGET_CHAP_MUTUAL_SECRET_FILE": "/ms"},
     "target.chap_mutual_user_file"),
    ({"TARGET_ACCESS": "acl", "TARGET_INITIATORS": RED, "TARGET_LUN_MAX": "300"},
     "target.lun_max"),
])
def test_config_checks_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as bad:
        load(None, env={f"SBPS_MARSHAL_{k}": v for k, v in env.items()})
    assert bad.value.key == key
    if key == "target.lun_max":
        assert "mapped LUN number equals the LUN id" in str(bad.value)
