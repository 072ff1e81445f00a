"""Debian's rtslib 2.1.75 (/usr/bin/python3) and unmodified /usr/bin/targetcli on the emulation."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from configfs import Mounted
from tests.fixtures import targetcli

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
TARGET_IQN = "iqn.2024-01.org.sbps.test:img1"
INITIATOR_IQN = "iqn.2024-01.org.sbps.test:client1"


@pytest.mark.skipif(not Path("/usr/lib/python3/dist-packages/rtslib_fb").is_dir(),
                    reason="Debian python3-rtslib-fb not installed")
def test_debian_rtslib_creates_and_reads_back(emulation: Mounted, backing: Path,
                                              tmp_path: Path) -> None:
    dbroot = tmp_path / "dbroot"
    dbroot.mkdir()
    proc = subprocess.run(
        ["/usr/bin/python3", str(HERE / "debian_rtslib_script.py"), emulation.root,
         str(backing), str(dbroot), TARGET_IQN, INITIATOR_IQN],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rtslib_file"].startswith("/usr/lib/python3/dist-packages/")
    assert report["storage_objects"] == [["fileio", "deb1", "deb-serial-1", str(backing),
                                          4 << 20]]
    assert report["targets"] == [TARGET_IQN]
    assert report["luns"] == [[17, "deb1"]]
    assert report["mapped"] == [[0, 17]]
    assert report["tpg_enable"] is True and report["gen_acls"] == "1"
    assert report["rmdir_errno"] == errno.EBUSY
    assert report["after_delete"] == []


@pytest.mark.skipif(not (Path("/usr/bin/targetcli").exists() and shutil.which("unshare")
                         and shutil.which("dbus-daemon")),
                    reason="needs Debian targetcli-fb, unshare and dbus-daemon")
def test_targetcli_save_clear_restore(tmp_path: Path, backing: Path) -> None:
    savefile = tmp_path / "saved.json"
    iqn = TARGET_IQN
    report = targetcli.run(str(tmp_path), [
        ["/backstores/fileio", "create", "name=img1", f"file_or_dev={backing}", "size=1M",
         "write_back=false"],
        ["/iscsi", "create", iqn],
        [f"/iscsi/{iqn}/tpg1/luns", "create", "/backstores/fileio/img1", "lun=3"],
        [f"/iscsi/{iqn}/tpg1/portals", "delete", "0.0.0.0", "3260"],
        [f"/iscsi/{iqn}/tpg1/portals", "create", "127.0.0.1", "3260"],
        ["saveconfig", f"savefile={savefile}"],
        ["ls"],
        ["clearconfig", "confirm=True"],
        ["ls"],
        ["restoreconfig", f"savefile={savefile}"],
        ["ls"],
    ], post=[sys.executable, "-c", "import sys; from configfs.control import ControlClient; "
             "print(ControlClient(sys.argv[1]).counters()['total'])", "{control}"],
        timeout=600)
    report["saved"] = savefile.read_text() if savefile.exists() else ""
    report["writes"] = int(report["post"]["out"])
    steps = {" ".join(s["cmd"][:2]): s for s in report["steps"]}
    for step in report["steps"]:
        assert step["rc"] == 0, step
    saved = json.loads(report["saved"])
    assert [so["name"] for so in saved["storage_objects"]] == ["img1"]
    [target] = saved["targets"]
    assert target["wwn"] == TARGET_IQN
    assert [lun["index"] for lun in target["tpgs"][0]["luns"]] == [3]
    assert target["tpgs"][0]["portals"] == [{"ip_address": "127.0.0.1", "iser": False,
                                             "offload": False, "port": 3260}]
    listings = [s["out"] for s in report["steps"] if s["cmd"] == ["ls"]]
    before, cleared, after = listings
    for listing in (before, after):
        assert "img1" in listing and TARGET_IQN in listing and "lun3" in listing
        assert "127.0.0.1:3260" in listing
    assert "img1" not in cleared and TARGET_IQN not in cleared
    assert "All configuration cleared" in steps["clearconfig confirm=True"]["out"]
    assert report["writes"] > 0
