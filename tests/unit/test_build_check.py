"""``image check`` on small trees made for the purpose: dpkg status, files, services, initrd."""

from __future__ import annotations

import gzip
import lzma
import os
import tarfile
from pathlib import Path

from sbps.imagebuild import check, initrd, pkgdb
from sbps.imagebuild.rootview import DirView, parse_listing

STATUS = """\
Package: open-iscsi
Status: install ok installed
Version: 2.1.8-1

Package: multipath-tools
Status: install ok installed
Description: multi
 line continuation: Status: not-installed

Package: csm-node-heartbeat
Status: deinstall ok config-files

Package: bos-reporter:amd64
Status: install ok installed
"""


def cpio_with(text: bytes) -> bytes:
    """A newc-looking blob holding ``text`` (the scanner only looks for bytes)."""
    return b"070701" + b"0" * 104 + b"init\0" + text + b"TRAILER!!!\0"


def write(root: Path, rel: str, data: bytes | str = b"", mode: int = 0o644) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path


def enable(root: Path, unit: str, target: str = "multi-user.target") -> None:
    wants = root / "etc/systemd/system" / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit).symlink_to(f"/usr/lib/systemd/system/{unit}")


def debian_tree(root: Path) -> Path:
    write(root, "etc/os-release", 'ID=debian\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    write(root, "var/lib/dpkg/status", STATUS)
    write(root, "boot/vmlinuz-6.1.0-1-amd64", b"kernel")
    write(root, "boot/initrd.img-6.1.0-1-amd64",
          gzip.compress(cpio_with(b"case $root in sbps-s3:*) ;; esac")))
    write(root, "usr/lib/dracut/modules.d/95sbps/parse-sbps.sh",
          'case "$root" in sbps-s3:*) rootok=1 ;; esac\n', 0o755)
    enable(root, "iscsid.socket", "sockets.target")
    enable(root, "multipathd.service")
    return root


def by_key(report: check.CheckReport) -> dict[str, check.CheckFinding]:
    return {f.key: f for f in report.findings}


def test_dpkg_status_lists_installed_packages_only() -> None:
    names = pkgdb.parse_dpkg_status(STATUS)
    assert names == {"open-iscsi", "multipath-tools", "bos-reporter"}


def test_debian_tree_is_bootable_with_evidence(tmp_path: Path) -> None:
    report = check.run(DirView(debian_tree(tmp_path / "root")))
    found = by_key(report)
    assert not report.missing_required(), report.to_text()
    assert report.family == "debian" and report.distro == "Debian GNU/Linux 12"
    assert found["iscsi-initiator"].evidence == "package open-iscsi"
    assert found["iscsid-enabled"].evidence.endswith("sockets.target.wants/iscsid.socket")
    assert "/usr/lib/dracut/modules.d/95sbps" in found["sbps-dracut"].evidence
    assert found["initrd-sbps"].status == "ok"
    assert found["kernel"].evidence == "boot/vmlinuz-6.1.0-1-amd64"
    assert found["bos-reporter"].status == "ok"  # dpkg's name:arch form
    assert found["csm-node-heartbeat"].status == "missing"  # config-files only
    assert report.level_status(1) == "complete"
    assert report.level_status(2) == "incomplete"
    assert report.to_dict()["bootable"] is True
    assert "result: bootable through SBPS" in report.to_text()


def test_missing_pieces_are_named_with_distribution_hints(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "etc/os-release", 'ID="rocky"\nID_LIKE="rhel centos fedora"\n')
    write(root, "boot/initramfs-5.14.img", gzip.compress(cpio_with(b"nothing here")))
    report = check.run(DirView(root))
    found = by_key(report)
    missing = {f.key for f in report.missing_required()}
    assert missing == {"kernel", "iscsi-initiator", "multipath", "iscsid-enabled",
                       "multipathd-enabled", "sbps-dracut", "initrd-sbps"}
    assert found["iscsi-initiator"].hint == "install iscsi-initiator-utils"
    assert found["multipath"].hint == "install device-mapper-multipath"
    assert "NOT bootable" in report.to_text()
    assert report.to_dict()["levels"][0]["status"] == "incomplete"


def test_files_on_disk_through_merged_usr_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for name in ("iscsid", "iscsiadm", "multipathd"):
        write(root, f"usr/sbin/{name}", b"\x7fELF", 0o755)
    (root / "sbin").symlink_to("usr/sbin")
    (root / "usr/lib").mkdir(parents=True)
    (root / "lib").symlink_to("/usr/lib")  # absolute: resolved inside the image
    write(root, "usr/lib/dracut/modules.d/90csm-sbps/sbps-root.sh", "# sbps-s3 handler\n")
    write(root, "usr/lib/modules/6.4.0/vmlinuz", b"k")
    view = DirView(root)
    assert view.resolve("lib/dracut/modules.d") == "usr/lib/dracut/modules.d"
    report = check.run(view, check.Artifacts(initrd="s3://b/id/initrd"))
    found = by_key(report)
    assert found["iscsi-initiator"].evidence == "files /usr/sbin/iscsid, /usr/sbin/iscsiadm"
    assert found["multipath"].status == "ok"
    assert found["sbps-dracut"].status == "ok"
    assert found["kernel"].evidence == "usr/lib/modules/6.4.0/vmlinuz"
    assert found["initrd"].evidence == "s3://b/id/initrd"
    assert "initrd-sbps" not in found and report.notes  # not verified, and said so
    assert {f.key for f in report.missing_required()} == {"iscsid-enabled",
                                                         "multipathd-enabled"}


def test_link_loops_and_escapes_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    (root / "up").symlink_to("../../../../etc")
    view = DirView(root)
    assert view.resolve("a/x") is None
    assert view.resolve("up") == "etc" or view.resolve("up") is None
    assert view.file("up/passwd") is None  # never the host's /etc/passwd


def test_initrd_scanner(tmp_path: Path) -> None:
    handler = cpio_with(b"root=sbps-s3:")
    early = cpio_with(b"microcode")  # an uncompressed early cpio comes first
    cases = {"plain": (handler, True), "gzip": (gzip.compress(handler), True),
             "early+xz": (early + lzma.compress(handler), True),
             "gzip-without": (gzip.compress(cpio_with(b"nfs")), False),
             "garbage": (os.urandom(4096).replace(b"0707", b"xxxx"), None)}
    for name, (data, want) in cases.items():
        path = write(tmp_path, name, data)
        assert initrd.mentions(path, b"sbps-s3") is want, name


def test_unsquashfs_listing_parser() -> None:
    text = """\
drwxr-xr-x 0/0                      72 1970-01-01 00:00 R
lrwxrwxrwx 0/0                       8 1970-01-01 00:00 R/sbin -> usr/sbin
-rw-r--r-- 0/0                       3 1970-01-01 00:00 R/etc/host name
drwxr-xr-x 1234/5678                49 1970-01-01 00:00 R/etc
"""
    assert parse_listing(text) == {"sbin": ("link", "usr/sbin"),
                                   "etc/host name": ("file", ""), "etc": ("dir", "")}


def test_tar_member_names_are_confined() -> None:
    from sbps.core.errors import InputError
    from sbps.imagebuild.unpack import member_name
    assert member_name(tarfile.TarInfo("./etc/x"), "t") == "etc/x"
    assert member_name(tarfile.TarInfo("./"), "t") == ""
    for bad in ("/etc/passwd", "../x", "a/../../x"):
        try:
            member_name(tarfile.TarInfo(bad), "t.tar")
        except InputError as exc:
            assert bad in str(exc)
        else:
            raise AssertionError(f"{bad} accepted")
