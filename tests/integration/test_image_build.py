"""``sbpsctl image build`` with real mksquashfs, unsquashfs, getcap, GNU tar, the moto S3
server (through the fault proxy) and the dev IMS server.

Sources: a directory, a GNU tar made with ``--xattrs``, and an OCI image layout made by
hand (blobs/sha256, index.json, manifest, two layers, a whiteout and an opaque
directory). The uploaded image is read back by the catalog, an upload failing before
the manifest leaves no linked record, and a re-run resumes it.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sbps.cli import main
from sbps.config import load
from sbps.core import identity
from sbps.imagebuild import pipeline
from sbps.sources.catalog import Catalog, ImsClient, make_auth
from sbps.sources.s3 import S3, read_credentials
from tests.fixtures.proxy import Fault, FaultProxy
from tests.fixtures.servers import IMSServer, S3Server

CAP = "cap_net_raw=ep"


def make_tree(root: Path) -> Path:
    for rel, data in {"etc/hostname": "node\n", "etc/os-release": "ID=debian\n",
                      "usr/bin/ping": "#!/bin/sh\n", "usr/lib/data": "x" * 5000}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)
    (root / "bin").symlink_to("usr/bin")
    os.link(root / "usr/lib/data", root / "usr/lib/data.hard")
    ping = root / "usr/bin/ping"
    os.chown(ping, 1234, 5678)
    ping.chmod(0o4755)  # after chown, which clears setuid
    subprocess.run(["setcap", CAP.replace("=", "+"), str(ping)], check=True)
    os.setxattr(root / "etc/hostname", "user.sbps", b"kept")
    return root


def gnu_tar(tree: Path, out: Path, *names: str) -> Path:
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C",
                    str(tree), "-cpzf", str(out), *(names or (".",))], check=True)
    return out


def listing(image: Path) -> str:
    return subprocess.run(["unsquashfs", "-lln", str(image)], check=True,
                          capture_output=True, text=True).stdout


def oci_layout(tmp: Path, tree: Path) -> Path:
    """Layer 1: the tree plus files a second layer hides; layer 2: whiteouts."""
    base = tmp / "layer1-tree"
    subprocess.run(["cp", "-a", "--preserve=all", str(tree), str(base)], check=True)
    (base / "etc/removed").write_text("gone\n")
    (base / "opt/old").mkdir(parents=True)
    (base / "opt/old/a").write_text("a")
    layer1 = gnu_tar(base, tmp / "l1.tgz")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (("etc/.wh.removed", b""), ("opt/old/.wh..wh..opq", b""),
                           ("opt/old/c", b"c")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    layer2 = tmp / "l2.tar"
    layer2.write_bytes(buf.getvalue())
    layout = tmp / "oci"
    blobs = layout / "blobs/sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes, media: str) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}

    layers = [blob(layer1.read_bytes(), "application/vnd.oci.image.layer.v1.tar+gzip"),
              blob(layer2.read_bytes(), "application/vnd.oci.image.layer.v1.tar")]
    config = blob(b'{"architecture":"amd64","os":"linux"}',
                  "application/vnd.oci.image.config.v1+json")
    manifest = blob(json.dumps({"schemaVersion": 2, "config": config, "layers": layers,
                                "mediaType": "application/vnd.oci.image.manifest.v1+json"
                                }).encode(), "application/vnd.oci.image.manifest.v1+json")
    manifest["platform"] = {"architecture": "amd64", "os": "linux"}
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2,
                                                   "manifests": [manifest]}))
    return layout


def build(source: Path, **kw: Any) -> tuple[str, bytes, str]:
    req = pipeline.BuildRequest(source=str(source), name="t", **kw)
    with pipeline.prepare(req, lambda _: None) as built:
        return built.digest, built.squashfs.read_bytes(), listing(built.squashfs)


def test_directory_tar_and_oci_build_and_rebuild_identically(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    d1, img1, list1 = build(tree)
    d2, img2, _ = build(tree)
    tarball = gnu_tar(tree, tmp_path / "root.tgz")
    t1, timg1, _ = build(tarball)
    t2, timg2, _ = build(tarball)
    assert img1 == img2 and d1 == d2  # rebuild: byte-identical
    assert timg1 == timg2 and t1 == t2
    assert timg1 == img1  # the tar of a tree builds the very same image
    assert "1234/5678" in next(line for line in list1.splitlines() if "usr/bin/ping" in line)
    assert "-rwsr-xr-x" in list1
    layout = oci_layout(tmp_path, tree)
    _, oimg, olist = build(layout)
    names = {line.split()[-1] for line in olist.splitlines()}
    assert "squashfs-root/opt/old/c" in names
    assert "squashfs-root/opt/old/a" not in names and "squashfs-root/etc/removed" not in names
    assert not any(".wh." in n for n in names)
    assert "squashfs-root/usr/bin/ping" in names


@pytest.mark.parametrize("kind", ["directory", "tar", "oci"])
def test_capabilities_ownership_and_xattrs_survive(tmp_path: Path, kind: str) -> None:
    tree = make_tree(tmp_path / "tree")
    source = {"directory": lambda: tree, "tar": lambda: gnu_tar(tree, tmp_path / "r.tgz"),
              "oci": lambda: oci_layout(tmp_path, tree)}[kind]()
    req = pipeline.BuildRequest(source=str(source), name="t")
    with pipeline.prepare(req, lambda _: None) as built:
        out = tmp_path / "out"
        subprocess.run(["unsquashfs", "-q", "-n", "-d", str(out), str(built.squashfs)],
                       check=True, capture_output=True)
    ping = out / "usr/bin/ping"
    getcap = subprocess.run(["getcap", str(ping)], capture_output=True, text=True).stdout
    assert CAP in getcap
    st = ping.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 5678, 0o4755)
    assert os.getxattr(out / "etc/hostname", "user.sbps") == b"kept"
    assert os.stat(out / "usr/lib/data").st_ino == os.stat(out / "usr/lib/data.hard").st_ino


def test_tar_escaping_the_tree_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        link = tarfile.TarInfo("etc")
        link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
        tf.addfile(link)
        info = tarfile.TarInfo("etc/planted")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(Exception, match="etc/planted"):
        build(evil)
    assert not Path("/tmp/planted").exists()


# --- the command, against moto (through the fault proxy) and the dev IMS server --------

@pytest.fixture
def setup(tmp_path: Path, ims_server: IMSServer, s3_server: S3Server, s3_bucket: str,
          s3_credential_file: Path, fault_proxy: Callable[[str], FaultProxy]) -> Any:
    proxy = fault_proxy(s3_server.endpoint)

    def config(bucket: str = s3_bucket, system: bool = True) -> str:
        path = tmp_path / f"marshal-{bucket}-{system}.toml"
        node = '[node]\nsystem_name = "sys"\nsite_domain = "example.test"\n' if system else ""
        path.write_text(f'{node}[catalog]\napi_gateway = "{ims_server.url}"\n'
                        f'ims_uri = "v3/images"\nauth = "none"\n'
                        f'[s3]\nendpoint = "{proxy.endpoint}"\nbucket = "{bucket}"\n'
                        f'credential_file = "{s3_credential_file}"\n')
        return str(path)

    tree = make_tree(tmp_path / "tree")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel " + os.urandom(64))
    initrd = tmp_path / "initrd"
    initrd.write_bytes(gzip.compress(b"070701 root=sbps-s3: handler"))
    return {"proxy": proxy, "config": config, "tree": tree, "ims": ims_server,
            "bucket": s3_bucket, "args": ["--kernel", str(kernel), "--initrd", str(initrd),
                                          "--boot-params", "console=ttyS0"]}


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except ValueError:
        return code, out, err


def test_build_uploads_registers_labels_and_the_catalog_reads_it(
        setup: Any, capsys: pytest.CaptureFixture[str], s3_credential_file: Path) -> None:
    cfg_path = setup["config"]()
    argv = ["--config", cfg_path, "image", "build", str(setup["tree"]), "--name", "img-a",
            "--json", *setup["args"]]
    code, doc, err = run_json(argv, capsys)
    assert code == 0, err
    record = setup["ims"].get(doc["image_id"])
    assert record["metadata"]["sbps-project"] == "true"
    assert record["metadata"][pipeline.DIGEST_KEY] == doc["digest"]
    assert record["link"]["path"] == doc["manifest"]["path"]
    assert doc["boot_parameters"]["root"].startswith(
        f"root=sbps-s3:s3://{setup['bucket']}/{doc['image_id']}/rootfs:")
    assert doc["boot_parameters"]["srv_name"] == "_sbps-hsn._tcp.sys.example.test"
    assert doc["check"]["levels"][0]["findings"]

    cfg = load(cfg_path).config

    async def scan() -> Any:
        catalog = Catalog(cfg, ImsClient(cfg.catalog, make_auth(cfg.catalog)),
                          S3(cfg.s3, read_credentials(str(s3_credential_file))))
        try:
            return await catalog.scan()
        finally:
            await catalog.ims.close()

    snap = asyncio.run(scan())
    (image,) = snap.images
    assert image.ims_id == doc["image_id"] and image.name == "img-a"
    assert image.identity == identity.rootfs(doc["rootfs"]["path"], doc["rootfs"]["etag"])

    code, again, _ = run_json(argv, capsys)  # idempotent: same record, nothing uploaded
    assert code == 0 and again["image_id"] == doc["image_id"]
    assert again["already_complete"] is True
    assert len(setup["ims"].list()) == 1


def test_failure_before_the_manifest_leaves_no_linked_record_and_a_rerun_resumes(
        setup: Any, capsys: pytest.CaptureFixture[str]) -> None:
    proxy: FaultProxy = setup["proxy"]
    proxy.add(Fault(method="PUT", path=r"/manifest\.json", status=503, count=100))
    argv = ["--config", setup["config"](), "image", "build", str(setup["tree"]),
            "--name", "img-b", "--json", *setup["args"]]
    code, _, err = run_json(argv, capsys)
    assert code == 1 and "run the same build again" in err
    (record,) = setup["ims"].list()
    assert not record.get("link") and "sbps-project" not in record["metadata"]
    proxy.clear_faults()
    proxy.reset_counts()
    code, doc, err = run_json(argv, capsys)
    assert code == 0, err
    assert doc["image_id"] == record["id"] and doc["record_reused"] is True
    assert f"s3://{setup['bucket']}/{record['id']}/rootfs" in doc["reused_objects"]
    assert len(doc["reused_objects"]) == 4  # rootfs, kernel, initrd, boot_parameters
    assert not proxy.requests("PUT", r"/rootfs")  # not sent again
    assert setup["ims"].get(record["id"])["link"]["etag"] == doc["manifest"]["etag"]


def test_bad_inputs_name_the_field(setup: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = setup["config"]()
    tree = str(setup["tree"])
    assert main(["--config", cfg, "image", "build", "/nonexistent", "--name", "x"]) == 1
    assert "SOURCE" in capsys.readouterr().err
    assert main(["--config", cfg, "image", "build", tree, "--name", "x",
                 "--arch", "sparc"]) == 1
    assert "--arch" in capsys.readouterr().err
    missing = setup["config"](bucket="no-such-bucket-here")
    assert main(["--config", missing, "image", "build", tree, "--name", "x", "--json"]) == 2
    assert "s3.bucket" in capsys.readouterr().err
    assert setup["ims"].list() == []  # nothing registered for a bucket that cannot hold it


def test_dry_run_does_nothing(setup: Any, capsys: pytest.CaptureFixture[str],
                              s3_client: Any) -> None:
    assert main(["--config", setup["config"](), "image", "build", str(setup["tree"]),
                 "--name", "x", "--dry-run", *setup["args"]]) == 0
    out = capsys.readouterr().out
    assert "mksquashfs" in out and "manifest.json last" in out and "PATCH" in out
    assert setup["ims"].list() == []
    assert s3_client.list_objects_v2(Bucket=setup["bucket"]).get("KeyCount") == 0


def test_label_note_check_by_id(setup: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = setup["config"](system=False)
    code, doc, err = run_json(["--config", cfg, "image", "build", str(setup["tree"]),
                               "--name", "c", "--no-label", "--json", *setup["args"]],
                              capsys)
    assert code == 0, err
    assert "node.system_name" in doc["boot_parameters"]["note"]
    assert "sbps-project" not in setup["ims"].get(doc["image_id"])["metadata"]
    assert main(["--config", cfg, "image", "label", doc["image_id"]]) == 0
    assert setup["ims"].get(doc["image_id"])["metadata"]["sbps-project"] == "true"
    assert main(["--config", cfg, "image", "label", doc["image_id"], "--remove"]) == 0
    assert "sbps-project" not in setup["ims"].get(doc["image_id"])["metadata"]
    assert main(["--config", cfg, "image", "label", doc["image_id"], "sbps-tenant=red"]) == 0
    assert setup["ims"].get(doc["image_id"])["metadata"]["sbps-tenant"] == "red"
    assert main(["--config", cfg, "image", "label", doc["image_id"], "sbps-tenant",
                 "--remove"]) == 0
    assert "sbps-tenant" not in setup["ims"].get(doc["image_id"])["metadata"]
    assert main(["--config", cfg, "image", "label", doc["image_id"], "=red"]) == 1
    capsys.readouterr()
    code, report, err = run_json(["--config", cfg, "image", "check", doc["image_id"],
                                  "--json"], capsys)
    assert code == 0, err
    found = {f["key"]: f for lvl in report["levels"] for f in lvl["findings"]}
    assert found["kernel"]["evidence"].endswith("/kernel")
    assert found["initrd-sbps"]["status"] == "ok"  # the downloaded initrd was read
