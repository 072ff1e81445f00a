"""Takeover of field workers (issue 21, items 1 and 5; docs/upgrade.md).

The field layout is built with Debian's unmodified targetcli (tests/fixtures/targetcli.py,
in its own namespace) running the site provisioning of csm-config's
provision_iscsi_server.sh and the field agent's own command strings (sbps-marshal
``marshal/lib/lio.py``) over images in an s3fs-like directory; targetcli's saveconfig.json
is then restored on the worker's emulation, as target.service does at boot. The whole
daemon starts with a field-like environment file. Reads through the emulation's control
channel are the booted nodes' use.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from configfs import rtslib_root
from sbps.core import identity
from tests.fixtures import targetcli
from tests.fixtures.images import UploadedImage
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer, S3Server

NMN_IP, HSN_IP = "10.252.1.10", "10.253.1.10"
SITE_PORTALS = {f"{NMN_IP}:3260", f"{HSN_IP}:3260"}
ATTRIBUTES = ("generate_node_acls", "demo_mode_write_protect", "prod_mode_write_protect",
              "authentication")
SAVED = "/etc/rtslib-fb-target/saveconfig.json"


def site_provisioning(iqn: str) -> list[list[str]]:
    """csm-config's add_server_target and auto_generate_node_acls, command for command."""
    return [[f"/iscsi create {iqn}"],
            [f"/iscsi/{iqn}/tpg1/portals delete ip_address=0.0.0.0 ip_port=3260"],
            [f"/iscsi/{iqn}/tpg1/portals create {NMN_IP}"],
            [f"/iscsi/{iqn}/tpg1/portals create {HSN_IP}"],
            [f"/iscsi/{iqn}/tpg1 set attribute demo_mode_write_protect=1"],
            [f"/iscsi/{iqn}/tpg1 set attribute prod_mode_write_protect=1"],
            [f"/iscsi/{iqn}/tpg1 set attribute generate_node_acls=1"], ["saveconfig"]]


def field_export(iqn: str, up: UploadedImage, s3fs: Path) -> list[list[str]]:
    """The field agent's create_fileio_backstore, create_lun and save_config."""
    ident = _ident(up)
    path = s3fs_path(up, s3fs)
    return [[f"/backstores/fileio create {ident.product_id} {path} 0 false true "
             f"{ident.serial}"],
            [f"/iscsi/{iqn}/tpg1/luns create /backstores/fileio/{ident.product_id}"],
            ["saveconfig"]]


def _ident(up: UploadedImage) -> Any:
    from sbps.core.model import S3Url

    bucket, _, key = up.rootfs_url.removeprefix("s3://").partition("/")
    return identity.rootfs(S3Url(bucket, key), up.rootfs_etag)


def s3fs_path(up: UploadedImage, s3fs: Path) -> Path:
    """Where the field's s3fs mount shows the rootfs object (plain files stand in)."""
    key = up.rootfs_url.removeprefix("s3://").partition("/")[2]
    path = s3fs / key
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(up.path, path)
    return path


def run_targetcli(w: Worker, steps: list[list[str]]) -> tuple[dict[str, Any], list[Any]]:
    """Run the steps in targetcli's namespace; returns targetcli's saveconfig and the steps."""
    work = w.root / f"targetcli-{len(list(w.root.glob('targetcli-*')))}"
    work.mkdir()
    report = targetcli.run(str(work), steps, ["cat", SAVED])
    assert report["post"]["rc"] == 0, report
    return json.loads(report["post"]["out"]), report["steps"]


def restore(w: Worker, saved: dict[str, Any]) -> None:
    """What target.service does at boot: restore saveconfig.json on the (empty) target."""
    with rtslib_root(w.emulation.root) as root:
        errors = root.restore(saved, clear_existing=True, abort_on_error=True)
    assert not errors, errors
    (w.root / "saveconfig.json").write_text(json.dumps(saved))


def field_env(w: Worker, s3_server: S3Server, ims: IMSServer, s3fs: Path) -> dict[str, str]:
    """The field's environment file (/etc/sysconfig/sbps-marshal), as systemd reads it;
    the worker's configuration file keeps only what the field has no variable for."""
    host = s3_server.endpoint.removeprefix("http://")
    bucket, credentials = w.settings["s3"].get("bucket"), w.settings["s3"].get("credential_file")
    if bucket is None:  # started before: the environment file is there
        bucket, credentials = _env_value(w, "S3_BUCKET"), _env_value(w, "S3_CREDENTIAL_FILE")
    text = "\n".join([
        "# sbps-marshal environment (field agent)",
        "SBPS_MARSHAL_SCAN_FREQUENCY=1",
        f"SBPS_MARSHAL_API_GATEWAY={ims.url}",
        "SBPS_MARSHAL_IMS_URI=v3/images",
        "SBPS_MARSHAL_IMS_TAGGING=true",
        "SBPS_MARSHAL_IMS_TIMEOUT=5",
        f"SBPS_MARSHAL_S3_HOST={host}",
        "SBPS_MARSHAL_S3_PROTO=http",
        f"SBPS_MARSHAL_S3_BUCKET={bucket}",
        f"SBPS_MARSHAL_S3_CREDENTIAL_FILE={credentials}",
        f"SBPS_MARSHAL_LIO_SAVE_FILE={w.root / 'saveconfig.json'}",
        f"SBPS_MARSHAL_SQUASHFS_S3FS_MOUNT={s3fs}",
        "SBPS_MARSHAL_TARGETCLI_BIN=/usr/bin/targetcli", ""])
    env_file = w.root / "sbps-marshal.env"
    env_file.write_text(text)
    for section, key in (("s3", "endpoint"), ("s3", "bucket"), ("s3", "credential_file"),
                         ("catalog", "api_gateway"), ("catalog", "ims_uri"),
                         ("catalog", "timeout"), ("target", "saveconfig_path"),
                         ("reconcile", "interval"),
                         ("target", "portals")):  # the default: keep the TPG's portals
        w.settings[section].pop(key, None)
    env = {}
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            env[k] = v
    return env


def _env_value(w: Worker, name: str) -> str:
    for line in (w.root / "sbps-marshal.env").read_text().splitlines():
        if line.startswith(f"SBPS_MARSHAL_{name}="):
            return line.partition("=")[2]
    raise AssertionError(name)


def tpg(w: Worker) -> Path:
    return Path(w.emulation.root) / "target/iscsi" / w.iqn / "tpgt_1"


def portals(w: Worker) -> set[str]:
    return {p.name for p in (tpg(w) / "np").iterdir()}


def attributes(w: Worker) -> dict[str, str]:
    return {a: (tpg(w) / "attrib" / a).read_text().strip() for a in ATTRIBUTES}


def by_name(w: Worker) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for index, lun in w.luns().items():
        out.setdefault(lun["name"], []).append(index)
    return out


@contextmanager
def reading(w: Worker, indexes: list[int]) -> Iterator[None]:
    """Booted nodes reading these LUNs (the emulation counts the reads) until the block
    ends."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.3):
            for i in indexes:
                w.emulation.control.read(f"target/iscsi/{w.iqn}/tpgt_1/lun/lun_{i}", 65536)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(10)


def converged(w: Worker, names: set[str]) -> dict[str, int] | None:
    """Each image at one id (not 0), backed by the verified cache: the ids, else None."""
    luns = w.luns()
    out = {}
    for index, lun in luns.items():
        if lun["name"] in out or index == 0 \
                or not lun["file"].startswith(str(w.root / "cache")):
            return None
        out[lun["name"]] = index
    return out if set(out) == names else None


def test_two_field_workers_taken_over_in_a_rolling_upgrade_converge_and_roll_back(
        make_worker: Callable[..., Worker], ims_server: IMSServer, s3_server: S3Server,
        upload_ims_image: Callable[..., UploadedImage], tmp_path: Path) -> None:
    s3fs = tmp_path / "s3fs"
    ups = [upload_ims_image(f"compute-{n}", label=True) for n in range(3)]
    names = {_ident(u).name for u in ups}
    workers = []
    for host, order in (("ncn-w001", ups), ("ncn-w002", ups[::-1])):
        w = make_worker(host, ims_server, reconcile={"retire_grace": "4s"})
        steps = site_provisioning(w.iqn)
        for up in order:
            steps += field_export(w.iqn, up, s3fs)
        saved, ran = run_targetcli(w, steps)
        assert all(s["rc"] == 0 for s in ran), [(s["cmd"], s["err"]) for s in ran]
        restore(w, saved)
        workers.append((w, {i: lun for i, lun in w.luns().items()}))
    (w1, field1), (w2, field2) = workers
    # The field numbers per worker from 0 in creation order: the two disagree.
    assert sorted(field1) == sorted(field2) == [0, 1, 2]
    assert field1[0]["name"] != field2[0]["name"]
    before_attrs = attributes(w1)
    assert portals(w1) == SITE_PORTALS and before_attrs["generate_node_acls"] == "1"

    # Rolling upgrade: ncn-w001 runs sbps, ncn-w002 still the field agent. Nodes booted
    # from w001's LUNs 0 and 1 keep reading them.
    w1.start(**field_env(w1, s3_server, ims_server, s3fs))
    with reading(w1, [0, 1]):
        # LUN 0 is never claimed: that image gets another id, exported beside LUN 0.
        wait_until("the claimed id exported beside LUN 0",
                   lambda: len(by_name(w1).get(field1[0]["name"], [])) == 2,
                   worker=w1, timeout=120)
        for _ in range(40):  # several grace periods of samples while in use
            luns = w1.luns()
            for i in (0, 1):
                assert luns[i] == field1[i], (i, luns.get(i), field1[i])
            assert portals(w1) == SITE_PORTALS
            assert attributes(w1) == before_attrs
            threading.Event().wait(0.25)
        # The field worker beside it is untouched.
        assert w2.luns() == field2
    first = wait_until("w001 converged at its claimed ids", lambda: converged(w1, names),
                       worker=w1, timeout=120)
    assert portals(w1) == SITE_PORTALS and attributes(w1) == before_attrs

    # ncn-w002 upgrades next, its LUN 0 in use; then it converges to the same ids.
    w2.start(**field_env(w2, s3_server, ims_server, s3fs))
    with reading(w2, [0]):
        wait_until("w002's LUN 0 exported at its claim too",
                   lambda: len(by_name(w2).get(field2[0]["name"], [])) == 2,
                   worker=w2, timeout=120)
        assert w2.luns()[0] == field2[0]
    second = wait_until("w002 converged", lambda: converged(w2, names), worker=w2,
                        timeout=120)
    assert second == first and 0 not in first.values()
    assert portals(w2) == SITE_PORTALS

    # Rollback of w001 to the field agent: target.service restores sbps's saveconfig,
    # the agent's pass runs over it and a new image is exported the field's way.
    assert w1.stop() == 0
    new = upload_ims_image("compute-new", label=True)
    sbps_saved = w1.root / "saveconfig.json"
    steps = [[f"restoreconfig savefile={sbps_saved} clear_existing=true"]]
    for up in ups:  # images the agent finds with another backing: its creates fail
        steps += field_export(w1.iqn, up, s3fs)[:2]
    steps += field_export(w1.iqn, new, s3fs)
    saved, ran = run_targetcli(w1, steps)
    assert ran[0]["rc"] == 0, ran[0]
    rolled: dict[int, str] = {}
    for t in saved["targets"]:
        for lun in t["tpgs"][0]["luns"]:
            rolled[lun["index"]] = lun["storage_object"].rpartition("/")[2]
    new_name = _ident(new).name
    assert rolled == {**{i: n for n, i in first.items()}, 0: new_name}
    restore(w1, saved)
    # Forward again: the field's new LUN 0 moves to a claimed id once idle.
    w1.start(**field_env(w1, s3_server, ims_server, s3fs))
    again = wait_until("w001 converged after the rollback",
                       lambda: converged(w1, names | {new_name}), worker=w1, timeout=120)
    assert {n: i for n, i in again.items() if n != new_name} == first
    assert again[new_name] >= 1
    assert portals(w1) == SITE_PORTALS
    assert w1.stop() == 0 and w2.stop() == 0
