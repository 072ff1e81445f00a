"""Upgrade from the field agent (adoption keeps its LUN numbers) and PE re-uploads (one WWID
never carries two contents until an admin promotes), on a running marshal."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from configfs import rtslib_root
from sbps.core import identity
from sbps.core.model import S3Url
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer


def field_agent_lun(w: Worker, path: Path, ident: Any, lun: int) -> None:
    """What the field agent left: a fileio backstore on its s3fs path, LUN in creation order."""
    from rtslib_fb import LUN, TPG, FabricModule, FileIOStorageObject, Target

    with rtslib_root(w.emulation.root) as _root:
        so = FileIOStorageObject(ident.name, str(path), size=path.stat().st_size,
                                 write_back=False, wwn=ident.serial)
        target = Target(FabricModule("iscsi"), w.iqn)
        tpg = TPG(target, 1)
        LUN(tpg, lun, so)
        tpg.set_attribute("generate_node_acls", "1")
        tpg.set_attribute("demo_mode_write_protect", "1")
        tpg.enable = True


def backing(w: Worker, lun: int) -> str:
    return w.luns()[lun]["file"]


def test_upgrade_adopts_the_field_agents_lun_and_moves_it_to_the_cache_when_idle(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], tmp_path: Path) -> None:
    up = upload_ims_image("compute", label=True)
    ident = identity.rootfs(up.rootfs_url, up.rootfs_etag)
    old = tmp_path / "s3fs" / up.ims_id / "rootfs"
    old.parent.mkdir(parents=True)
    shutil.copy(up.path, old)
    w = make_worker("ncn-w001", ims_server, reconcile={"retire_grace": "2s"},
                    target={"adopt_keep_backing": True})
    field_agent_lun(w, old, ident, 7)
    w.emulation.control.reset_counters()
    result = w.once()
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(w.luns()) == [7] and backing(w, 7) == str(old)
    assert w.luns()[7]["serial"] == ident.serial
    # Adopted, not recreated: no storage object or LUN was made.
    log = w.emulation.control.counters()["log"]
    assert not [(op, path) for op, path in log if op in ("mkdir", "symlink")
                and ("/lun/" in path or "/core/" in path)], log
    # Now let it move to the verified cache copy while idle; the number stays 7.
    w.settings["target"]["adopt_keep_backing"] = False
    w.start()
    def moved() -> bool:
        luns = w.luns()  # one read: the LUN is deleted and recreated at 7 in between
        return 7 in luns and luns[7]["file"].startswith(str(w.root / "cache"))

    wait_until("the backing file to move into the cache", moved, worker=w)
    assert list(w.luns()) == [7] and w.luns()[7]["serial"] == ident.serial
    assert w.stop() == 0


def test_pe_reupload_keeps_the_agreed_version_until_promoted(
        make_worker: Callable[..., Worker], ims_server: IMSServer, s3_client: Any,
        s3_bucket: str, squashfs_image: Callable[..., Any]) -> None:
    first, second = squashfs_image("pe1", files={"v": b"one"}), squashfs_image(
        "pe2", files={"v": b"two"})
    key = "PE/CPE-base.x86_64-24.11.squashfs"
    s3_client.upload_file(str(first.path), s3_bucket, key)
    ident = identity.pe(S3Url(s3_bucket, key), "")
    w = make_worker("ncn-w001", ims_server)
    w.start()
    lun = wait_until("the PE export", lambda: next(
        (n for n, x in w.luns().items() if x["serial"] == ident.serial), None), worker=w)
    old_sha = hashlib.sha256(Path(backing(w, lun)).read_bytes()).hexdigest()
    assert old_sha == hashlib.sha256(first.path.read_bytes()).hexdigest()
    s3_client.upload_file(str(second.path), s3_bucket, key)
    wait_until("pe_changed reported", lambda: "pe_changed" in w.log(), worker=w, timeout=90)
    assert hashlib.sha256(Path(backing(w, lun)).read_bytes()).hexdigest() == old_sha
    url = (w.root / "state/http-url").read_text().strip()
    r = subprocess.run([sys.executable, "-c", "from sbps.cli import run; run()", "--config",
                        str(w.config_path), "image", "promote", ident.name, "--url", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    new_sha = hashlib.sha256(second.path.read_bytes()).hexdigest()
    def new_content() -> bool:
        # One read of the LUN table per try: the old LUN goes and the new one comes between.
        luns = w.luns()
        return lun in luns and hashlib.sha256(
            Path(luns[lun]["file"]).read_bytes()).hexdigest() == new_sha

    wait_until("the new content at the same LUN id", new_content, worker=w, timeout=90)
    assert w.luns()[lun]["serial"] == ident.serial
    assert w.stop() == 0
