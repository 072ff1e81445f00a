"""``image check`` with real tools: rpm databases made with rpmbuild and rpm, squashfs
files read with unsquashfs, and the ``sbpsctl image check`` command."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sbps.cli import main
from sbps.imagebuild import check, pkgdb
from sbps.imagebuild.rootview import DirView, SquashfsView
from sbps.imagebuild.squashfs import make_squashfs
from tests.unit.test_build_check import debian_tree, enable, write

SPEC = """\
Name: {name}
Version: 1.0
Release: 1
Summary: test package
License: MIT
BuildArch: noarch
%description
test
%files
"""


def rpmdb(tmp_path: Path, dbdir: Path, names: list[str]) -> Path:
    """A real rpm sqlite database holding tiny packages built with rpmbuild."""
    for tool in ("rpm", "rpmbuild"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install rpm)")
    top = tmp_path / "rpmbuild"
    rpms = []
    for name in names:
        spec = tmp_path / f"{name}.spec"
        spec.write_text(SPEC.format(name=name))
        subprocess.run(["rpmbuild", "-bb", "--define", f"_topdir {top}", str(spec)],
                       check=True, capture_output=True)
        rpms.append(str(next(top.rglob(f"{name}-1.0-1.noarch.rpm"))))
    dbdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["rpm", "--dbpath", str(dbdir), "--initdb"], check=True)
    subprocess.run(["rpm", "--dbpath", str(dbdir), "-i", "--justdb", "--nodeps",
                    "--ignorearch", "--ignoreos", *rpms], check=True, capture_output=True)
    return dbdir


def rocky_tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    write(root, "etc/os-release", 'ID="rocky"\nID_LIKE="rhel centos fedora"\n')
    rpmdb(tmp_path, root / "usr/lib/sysimage/rpm",
          ["iscsi-initiator-utils", "device-mapper-multipath", "csm-sbps-dracut",
           "spire-agent"])
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/rpm").symlink_to("../../usr/lib/sysimage/rpm")
    return root


def test_rpm_sqlite_database_read_with_rpm(tmp_path: Path) -> None:
    root = rocky_tree(tmp_path)
    before = sorted(p.name for p in (root / "usr/lib/sysimage/rpm").iterdir())
    dbs = pkgdb.read_all(DirView(root))
    assert [(d.kind, d.path, d.reader) for d in dbs] == [
        ("rpm-sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite", "rpm --dbpath")]
    assert {"iscsi-initiator-utils", "spire-agent"} <= dbs[0].names
    # The inspected tree is never written (the query runs on a copy).
    assert sorted(p.name for p in (root / "usr/lib/sysimage/rpm").iterdir()) == before
    found = {f.key: f for f in check.run(DirView(root)).findings}
    assert found["iscsi-initiator"].evidence == "package iscsi-initiator-utils"
    assert found["multipath"].evidence == "package device-mapper-multipath"
    assert found["spire-agent"].status == "ok"
    assert found["iscsid-enabled"].status == "missing"


def test_rpm_sqlite_read_without_the_rpm_program(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = rocky_tree(tmp_path)
    real_which = shutil.which
    monkeypatch.setattr(pkgdb.shutil, "which",
                        lambda name: None if name == "rpm" else real_which(name))
    dbs = pkgdb.read_all(DirView(root))
    assert dbs[0].reader == "sqlite3"
    assert {"iscsi-initiator-utils", "csm-sbps-dracut"} <= dbs[0].names


def test_unreadable_rpm_database_falls_back_to_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "var/lib/rpm/Packages.db", b"\0" * 4096)  # ndb: not readable here
    write(root, "usr/sbin/multipathd", b"\x7fELF", 0o755)
    report = check.run(DirView(root))
    assert report.package_dbs[0]["kind"] == "rpm-ndb" and report.package_dbs[0]["error"]
    found = {f.key: f for f in report.findings}
    assert found["multipath"].evidence == "files /usr/sbin/multipathd"
    assert "unreadable" in report.to_text()


def test_squashfs_file_checked_without_mounting(tmp_path: Path) -> None:
    tree = debian_tree(tmp_path / "deb")
    image = make_squashfs(tree, tmp_path / "deb.squashfs")
    view = SquashfsView(image)
    try:
        assert view.kind("etc/systemd/system/multi-user.target.wants/multipathd.service") \
            == "link"
        report = check.run(view)
    finally:
        view.close()
    assert not view.work.exists()
    assert not report.missing_required(), report.to_text()
    assert {f.key: f for f in report.findings}["initrd-sbps"].status == "ok"


def test_cli_check_json_and_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    good = make_squashfs(debian_tree(tmp_path / "good"), tmp_path / "good.squashfs")
    bad = tmp_path / "bad"
    write(bad, "etc/os-release", "ID=debian\n")
    enable(bad, "multipathd.service")
    assert main(["image", "check", str(good), "--json", "--strict"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bootable"] is True and doc["levels"][0]["status"] == "complete"
    assert main(["image", "check", str(bad)]) == 0
    assert "NOT bootable" in capsys.readouterr().out
    assert main(["image", "check", str(bad), "--strict"]) == 1
    assert main(["image", "check", str(tmp_path / "nope")]) == 1
    assert "SOURCE" in capsys.readouterr().err
