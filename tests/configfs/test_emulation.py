"""Raw filesystem semantics of the emulation and its side channel (no rtslib involved)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from configfs import ControlError, Mounted

pytestmark = pytest.mark.integration

TARGET_IQN = "iqn.2024-01.org.sbps.test:img1"
INITIATOR_IQN = "iqn.2024-01.org.sbps.test:client1"


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def errno_of(fn: object, *args: object) -> int:
    with pytest.raises(OSError) as raised:
        fn(*args)  # type: ignore[operator]
    return int(raised.value.errno or 0)


def make_export(m: Mounted, backing: Path, lun: int = 0) -> dict[str, str]:
    so = f"{m.target}/core/fileio_0/img1"
    os.makedirs(so)
    write(f"{so}/control", f"fd_dev_name={backing},fd_dev_size={4 << 20}")
    write(f"{so}/enable", "1")
    tpg = f"{m.target}/iscsi/{TARGET_IQN}/tpgt_1"
    os.makedirs(f"{tpg}/lun/lun_{lun}")
    os.symlink(so, f"{tpg}/lun/lun_{lun}/link0")
    return {"so": so, "tpg": tpg, "lun": f"{tpg}/lun/lun_{lun}"}


def test_kernel_creates_device_children(emulation: Mounted) -> None:
    assert read(f"{emulation.target}/version").startswith("Target Engine Core ConfigFS")
    so = f"{emulation.target}/core/fileio_0/img1"
    os.makedirs(so)
    names = set(os.listdir(so))
    assert {"control", "enable", "info", "udev_path", "alias", "wwn", "attrib", "alua", "pr",
            "statistics"} <= names
    assert {"vpd_unit_serial", "vendor_id", "product_id", "revision"} <= set(
        os.listdir(f"{so}/wwn"))
    assert {"block_size", "hw_block_size", "emulate_write_cache"} <= set(
        os.listdir(f"{so}/attrib"))
    assert "alua_access_state" in os.listdir(f"{so}/alua/default_tg_pt_gp")
    assert errno_of(read, f"{so}/control") == errno.EACCES
    assert errno_of(write, f"{so}/attrib/hw_block_size", "4096") == errno.EACCES
    assert errno_of(write, f"{so}/attrib/emulate_write_cache", "2") == errno.EINVAL
    assert errno_of(os.rmdir, f"{so}/attrib") == errno.EPERM


def test_control_shows_in_info_and_enable_needs_the_file(emulation: Mounted,
                                                         tmp_path: Path) -> None:
    so = f"{emulation.target}/core/fileio_0/img1"
    os.makedirs(so)
    missing = tmp_path / "missing.img"
    write(f"{so}/control", f"fd_dev_name={missing},fd_dev_size=1048576,fd_buffered_io=1")
    info = " ".join(read(f"{so}/info").split())
    assert f"File: {missing} Size: 1048576 Mode: Buffered-WCE" in info
    assert "Status: DEACTIVATED" in info
    assert errno_of(write, f"{so}/enable", "1") == errno.ENOENT
    missing.write_bytes(b"\0" * 1048576)
    write(f"{so}/enable", "1")
    assert read(f"{so}/enable") == "1\n"


def test_symlinks_readlink_and_busy_rmdir(emulation: Mounted, backing: Path) -> None:
    paths = make_export(emulation, backing)
    link = f"{paths['lun']}/link0"
    assert os.readlink(link) == "../../../../../../target/core/fileio_0/img1"
    assert os.path.realpath(link) == paths["so"]
    assert "Status: ACTIVATED" in read(f"{paths['so']}/info")
    assert errno_of(os.rmdir, paths["so"]) == errno.EBUSY
    acl = f"{paths['tpg']}/acls/{INITIATOR_IQN}"
    os.makedirs(f"{acl}/lun_5")
    os.symlink(paths["lun"], f"{acl}/lun_5/mapped")
    assert os.readlink(f"{acl}/lun_5/mapped") == "../../../../../../../target/iscsi/" \
        f"{TARGET_IQN}/tpgt_1/lun/lun_0"
    os.unlink(link)
    assert errno_of(os.rmdir, paths["lun"]) == errno.EBUSY
    os.unlink(f"{acl}/lun_5/mapped")
    os.rmdir(f"{acl}/lun_5")
    os.rmdir(paths["lun"])
    os.rmdir(paths["so"])
    os.rmdir(os.path.dirname(paths["so"]))
    assert os.listdir(f"{emulation.target}/core") == ["alua"]


def test_tpg_layout_and_generated_acl_attributes(emulation: Mounted) -> None:
    tpg = f"{emulation.target}/iscsi/{TARGET_IQN}/tpgt_1"
    os.makedirs(tpg)
    assert {"enable", "dynamic_sessions", "attrib", "param", "auth", "np", "lun", "acls"} <= set(
        os.listdir(tpg))
    assert "discovery_auth" in os.listdir(f"{emulation.target}/iscsi")
    assert "fabric_statistics" in os.listdir(os.path.dirname(tpg))
    for name in ("generate_node_acls", "demo_mode_write_protect", "cache_dynamic_acls",
                 "authentication"):
        write(f"{tpg}/attrib/{name}", "1")
        assert read(f"{tpg}/attrib/{name}") == "1\n"
    os.mkdir(f"{tpg}/np/127.0.0.1:3260")
    assert errno_of(os.mkdir, f"{tpg}/np/not-a-portal") == errno.EINVAL
    assert errno_of(os.mkdir, f"{emulation.target}/iscsi/{TARGET_IQN}/tpg1") == errno.EINVAL


def test_chap_attributes_need_cap_sys_admin_as_in_the_kernel(emulation: Mounted) -> None:
    """LIO answers EPERM to reads and writes of the CHAP attributes by a process without
    CAP_SYS_ADMIN (the real-kernel lane found it); other attributes only check modes."""
    import subprocess

    tpg = f"{emulation.target}/iscsi/{TARGET_IQN}/tpgt_1"
    os.makedirs(tpg)
    write(f"{tpg}/auth/userid", "sbps")
    limited = ["setpriv", "--bounding-set=-all,+dac_override", "--inh-caps=-all", "--"]
    for path, denied in ((f"{tpg}/auth/userid", True), (f"{tpg}/auth/password", True),
                         (f"{tpg}/auth/authenticate_target", True),
                         (f"{emulation.target}/iscsi/discovery_auth/userid", True),
                         (f"{tpg}/attrib/authentication", False)):
        r = subprocess.run([*limited, "cat", path], capture_output=True, text=True)
        assert (r.returncode != 0 and "Operation not permitted" in r.stderr) is denied, (
            path, r.stderr)
    r = subprocess.run([*limited, "python3", "-c", "import os, sys\n"
                        "fd = os.open(sys.argv[1], os.O_WRONLY)\nos.write(fd, b'x')",
                        f"{tpg}/auth/userid"], capture_output=True, text=True)
    assert "Operation not permitted" in r.stderr, r.stderr
    assert read(f"{tpg}/auth/userid") == "sbps\n"  # with every capability


def test_simulated_reads_and_test_unit_ready(emulation: Mounted, backing: Path) -> None:
    paths = make_export(emulation, backing, lun=17)
    stats = f"{paths['lun']}/statistics"
    assert {"scsi_port", "scsi_tgt_port", "scsi_transport"} <= set(os.listdir(stats))
    control = emulation.control
    control.read(paths["lun"], nbytes=3 << 20, commands=6)
    assert read(f"{stats}/scsi_tgt_port/read_mbytes") == "3\n"
    assert read(f"{stats}/scsi_tgt_port/in_cmds") == "6\n"
    control.test_unit_ready(paths["lun"], commands=2)
    assert read(f"{stats}/scsi_tgt_port/read_mbytes") == "3\n"
    assert read(f"{stats}/scsi_tgt_port/in_cmds") == "8\n"
    assert read(f"{stats}/scsi_tgt_port/write_mbytes") == "0\n"
    assert read(f"{paths['so']}/statistics/scsi_lu/num_cmds") == "8\n"


def test_sessions_dynamic_and_acl(emulation: Mounted, backing: Path) -> None:
    paths = make_export(emulation, backing)
    control = emulation.control
    with pytest.raises(ControlError):
        control.add_session(TARGET_IQN, INITIATOR_IQN)  # no ACL, no generated ACLs
    write(f"{paths['tpg']}/attrib/generate_node_acls", "1")
    control.add_session(TARGET_IQN, INITIATOR_IQN)
    assert read(f"{paths['tpg']}/dynamic_sessions").startswith(INITIATOR_IQN + ",")
    assert [s["initiator"] for s in control.sessions()] == [INITIATOR_IQN]
    os.mkdir(f"{paths['tpg']}/acls/{INITIATOR_IQN}")
    assert read(f"{paths['tpg']}/dynamic_sessions") == ""
    assert read(f"{paths['tpg']}/acls/{INITIATOR_IQN}/info").startswith("InitiatorName: ")
    control.remove_session(TARGET_IQN, INITIATOR_IQN)
    assert read(f"{paths['tpg']}/acls/{INITIATOR_IQN}/info").startswith("No active iSCSI")


def test_injected_errors_hit_only_the_chosen_operation(emulation: Mounted) -> None:
    control = emulation.control
    core = f"{emulation.target}/core"
    control.inject(f"{core}/fileio_0", "EIO", ops=["mkdir"])
    assert errno_of(os.mkdir, f"{core}/fileio_0") == errno.EIO
    os.mkdir(f"{core}/fileio_0")  # one-shot: consumed
    control.inject(f"{core}/fileio_0", "ENOSPC", prefix=True, once=False)
    assert errno_of(os.mkdir, f"{core}/fileio_0/a") == errno.ENOSPC
    assert errno_of(os.mkdir, f"{core}/fileio_0/b") == errno.ENOSPC
    os.makedirs(f"{emulation.target}/iscsi/{TARGET_IQN}")  # elsewhere: unaffected
    control.clear_faults()
    os.mkdir(f"{core}/fileio_0/a")
    control.inject(f"{core}/fileio_0/a", "EBUSY", ops=["rmdir"])
    assert errno_of(os.rmdir, f"{core}/fileio_0/a") == errno.EBUSY
    os.rmdir(f"{core}/fileio_0/a")


def test_write_counter_counts_only_mutations(emulation: Mounted) -> None:
    control = emulation.control
    control.reset_counters()
    os.listdir(emulation.target)
    read(f"{emulation.target}/version")
    assert control.writes() == 0
    os.makedirs(f"{emulation.target}/core/fileio_0/img1")
    write(f"{emulation.target}/core/fileio_0/img1/udev_path", "/x")
    assert errno_of(os.rmdir, f"{emulation.target}/core/fileio_0") == errno.ENOTEMPTY
    counters = control.counters()
    assert counters["by_op"] == {"write": 1, "mkdir": 2, "rmdir": 0, "symlink": 0,
                                 "unlink": 0}
    control.reset_counters()
    assert control.writes() == 0


def test_model_alias_sets_the_product_id_from_the_name(emulation: Mounted,
                                                      backing: Path) -> None:
    paths = make_export(emulation, backing)
    so = f"{emulation.target}/core/fileio_0/abcdef0123456789xyz"
    os.makedirs(so)
    write(f"{so}/attrib/emulate_model_alias", "0")
    assert read(f"{so}/wwn/product_id") == "FILEIO\n"
    write(f"{so}/attrib/emulate_model_alias", "1")
    assert read(f"{so}/wwn/product_id") == "abcdef012345678\n"
    # As the kernel does: refused while the device is exported through a LUN.
    assert errno_of(write, f"{paths['so']}/attrib/emulate_model_alias", "0") == errno.EINVAL
