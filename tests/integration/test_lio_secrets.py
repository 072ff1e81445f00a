"""LIO (configfs emulation): CHAP is written to configfs files by this process, so no
secret reaches any process's arguments or environment; saveconfig.json stays 0600; and in
ACL mode a mapped LUN is write-protected from the moment it is linked (the TPG's
``prod_mode_write_protect``, which LIO applies at link time, before rtslib writes the mapped
LUN's own ``write_protect``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from configfs import Mounted
from tests.fixtures.secrets import ProcScan, loose_files
from tests.integration import test_lio_access as acl
from tests.integration.test_lio_access import Rig, mount  # noqa: F401 (a fixture)

pytestmark = acl.pytestmark


@pytest.fixture
def lio(mount: Mounted, tmp_path: Path) -> Rig:  # noqa: F811 (the imported fixture)
    return Rig(mount, tmp_path)


def test_chap_on_lio_reaches_no_process_and_no_loose_file(lio: Rig) -> None:
    with ProcScan.of(acl.SECRET, acl.MUTUAL_SECRET, acl.BLUE_SECRET) as scan:
        lio.converge()
    assert scan.sweeps > 0 and scan.leaks == []
    saved = Path(lio.env.saveconfig)
    assert acl.SECRET in saved.read_text()
    assert loose_files(list(saved.parent.glob(saved.name + "*"))) == {}


def test_acl_mode_maps_luns_write_protected_at_link_time(lio: Rig) -> None:
    lio.converge()
    assert lio.attr("attrib", "prod_mode_write_protect") == "1"
    # What rtslib does for a new mapping: mkdir, symlink, and only then write_protect.
    # Read in between, the mapping is already write-protected.
    tpg = os.path.join(lio.env.mount, "target", "iscsi", acl.sc.IQN, "tpgt_1")
    acl_dir = os.path.join(tpg, "acls", acl.OPS)
    mapped = os.path.join(acl_dir, "lun_200")
    os.mkdir(mapped)
    lun = next(os.path.join(tpg, "lun", n) for n in sorted(os.listdir(os.path.join(tpg, "lun"))))
    os.symlink(lun, os.path.join(mapped, "probe"))
    with open(os.path.join(mapped, "write_protect")) as f:
        assert f.read().strip() == "1"
