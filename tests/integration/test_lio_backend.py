"""The LIO backend on the configfs emulation, with PyPI rtslib-fb 2.2.4 in-process and the
same scenarios with Debian's rtslib-fb 2.1.75 (/usr/bin/python3) in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from configfs import Mounted, mounted
from configfs.rtslib_compat import restore_rtslib
from sbps.config import Config, TargetConfig
from sbps.core.errors import BackendError
from sbps.reconcile.loop import OPEN_ACCESS_ATTRIBUTES
from sbps.target.factory import make_backend
from sbps.target.lio.backend import LioBackend
from tests.fixtures import targetcli as lio_targetcli
from tests.integration import lio_scenarios as sc

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                       reason="needs root and /dev/fuse"),
]

HERE = Path(__file__).resolve().parent
ROOT = str(HERE.parent.parent)
SCRIPT = str(HERE / "lio_scenarios.py")
DEBIAN_PY = "/usr/bin/python3"
HAVE_DEBIAN = Path("/usr/lib/python3/dist-packages/rtslib_fb").is_dir()


class Runner:
    """Runs a scenario with one rtslib: in this process, or under Debian's python."""

    def __init__(self, kind: str, mount: Mounted, workdir: Path) -> None:
        self.kind = kind
        self.mount = mount
        self.env = sc.Env(mount.root, mount.control_path, str(workdir))

    @property
    def python(self) -> str:
        return DEBIAN_PY if self.kind == "debian" else sys.executable

    def args(self, name: str, args: dict[str, Any]) -> list[str]:
        return [self.python, SCRIPT, name, self.mount.root, self.mount.control_path,
                self.env.workdir, json.dumps(args)]

    def run(self, name: str, **args: Any) -> dict[str, Any]:
        if self.kind == "pypi":
            # Through JSON, so both runners hand back the same shapes.
            return json.loads(json.dumps(sc.SCENARIOS[name](self.env, args)))
        proc = subprocess.run(self.args(name, args), capture_output=True, text=True,
                              timeout=600, check=False, env={**os.environ, "PYTHONPATH": ROOT})
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
        return result

    def popen(self, name: str, **args: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(self.args(name, args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": ROOT})


@pytest.fixture
def rtslib_globals() -> Iterator[None]:
    """The backend points rtslib's module globals at the emulation; put them back."""
    from rtslib_fb import fabric, node, root

    saved = {"configfs_dir": node.CFSNode.configfs_dir, "mount_configfs": root.mount_configfs,
             "root.modprobe": root.modprobe, "fabric.modprobe": fabric.modprobe,
             "preferred_dbroot": root.RTSRoot._preferred_dbroot}
    yield
    restore_rtslib(saved)


@pytest.fixture(params=["pypi", "debian"])
def runner(request: pytest.FixtureRequest, tmp_path: Path,
           rtslib_globals: None) -> Iterator[Runner]:
    if request.param == "debian" and not HAVE_DEBIAN:
        pytest.skip("Debian python3-rtslib-fb not installed")
    with mounted() as handle:
        yield Runner(request.param, handle, tmp_path)


def test_open_access_attributes_match_the_reconciler() -> None:
    assert sc.OPEN_ACCESS == OPEN_ACCESS_ATTRIBUTES


def test_constructor_and_factory_have_no_side_effects(tmp_path: Path,
                                                      rtslib_globals: None) -> None:
    from rtslib_fb import node

    before = node.CFSNode.configfs_dir
    missing = str(tmp_path / "no-configfs" / "target")
    cfg = Config(target=TargetConfig(configfs_root=missing))
    backend = make_backend(cfg, sc.IQN)
    assert isinstance(backend, LioBackend) and backend.name == "lio"
    assert node.CFSNode.configfs_dir == before
    with pytest.raises(BackendError) as raised:
        backend.read()
    assert raised.value.temporary and missing in str(raised.value)
    # A tree that goes away after the backend opened it is an error too, never an empty
    # target (which a pass would try to create anew).
    os.makedirs(missing)
    backend.open()
    assert not backend.read().exists
    os.rmdir(missing)
    for call in (backend.read, backend.stats, backend.sessions):
        with pytest.raises(BackendError) as raised:
            call()
        assert raised.value.temporary and missing in str(raised.value)


def test_converge_from_empty_then_zero_writes(runner: Runner) -> None:
    result = runner.run("converge", claims={"1": 17, "2": 200, "3": 5})
    [first] = result["rounds"]
    assert first["failed"] == {}
    assert first["actions"][:3] == ["CreateTarget", "SetPortals", "SetTpgAttributes"]
    assert first["actions"][-1] == "SetTpgEnabled"
    assert result["second_pass_actions"] == 0
    assert result["second_pass_writes"] == 0
    state = result["state"]
    names = {n: sc.image(n).identity for n in (1, 2, 3)}
    assert state["luns"] == sorted([[17, names[1].name], [200, names[2].name],
                                    [5, names[3].name]])
    assert state["exists"] and state["tpg_enabled"]
    assert state["portals"] == ["127.0.0.1:3260", "127.0.0.2:3260"]
    attrs = dict(state["attributes"])
    assert attrs["generate_node_acls"] == "1" and attrs["demo_mode_write_protect"] == "1"
    assert attrs["cache_dynamic_acls"] == "1" and attrs["authentication"] == "0"
    for so in state["storage_objects"]:
        ident = next(i for i in names.values() if i.name == so["name"])
        assert so["serial"] == ident.serial and so["product_id"] == ident.product_id
        assert so["vendor"] == "LIO-ORG" and so["size"] == sc.SIZE
        assert so["write_back"] is False and so["readonly"] is True
        assert so["path"].startswith(runner.env.cache_dir + "/")
    assert state["foreign"] == []
    assert set(result["stats"]) == {"5", "17", "200"}
    saved = result["saved"]
    assert sorted(so["name"] for so in saved["storage_objects"]) == sorted(
        i.name for i in names.values())
    assert {so["attributes"]["emulate_model_alias"] for so in saved["storage_objects"]} == {1}
    [target] = saved["targets"]
    assert sorted(lun["index"] for lun in target["tpgs"][0]["luns"]) == [5, 17, 200]
    assert result["has_backup"] is False


def test_stats_and_sessions_come_from_configfs(runner: Runner) -> None:
    runner.run("converge", claims={"1": 17})
    lun = os.path.join(runner.mount.target, "iscsi", sc.IQN, "tpgt_1", "lun", "lun_17")
    ctl = runner.mount.control
    ctl.read(lun, nbytes=3 << 20, commands=7)
    ctl.test_unit_ready(lun, commands=2)
    ctl.add_session(sc.IQN, "iqn.2024-01.org.sbps.test:node1")
    ctl.reset_counters()
    result = runner.run("converge", claims={"1": 17})
    assert result["stats"]["17"]["read_bytes"] == 3 << 20
    assert result["stats"]["17"]["commands"] == 9
    assert result["sessions"] == ["iqn.2024-01.org.sbps.test:node1"]
    assert result["has_backup"] is False  # nothing changed: nothing saved
    assert ctl.writes() == 0


def test_a_read_sees_changes_behind_its_back(runner: Runner) -> None:
    """Reads between full ones re-read the TPG and the object lists only: a change that
    adds or removes an object is seen at once, a LUN re-linked in place after
    ``target.verify_interval``."""
    result = runner.run("drift")
    names = result["names"]
    assert result["cached"] == result["full"]
    assert result["lun_removed"] == {"1": names["1"]}
    assert result["tpg_disabled"] is False
    assert result["relinked_before_verify"] == {"1": names["1"]}
    assert result["relinked_after_verify"] == {"1": names["2"]}


def test_saveconfig_reuses_dumps_and_equals_a_full_dump(runner: Runner) -> None:
    result = runner.run("saved")
    assert result["exported"] == {"equal": True, "is_nonrot": 0}
    assert result["retired"] == {"equal": True, "is_nonrot": 0}
    # Changed live behind sbps's back and not saved by the admin: the file keeps the value
    # of the last dump until verify_interval has passed.
    assert result["changed_unsaved"] == {"equal": False, "is_nonrot": 0}
    assert result["changed_saved"] == {"equal": True, "is_nonrot": 1}
    assert result["changed_aged"] == {"equal": True, "is_nonrot": 0}


def test_foreign_objects_survive_and_are_refused(runner: Runner) -> None:
    result = runner.run("foreign")
    assert result["second_pass_writes"] == 0
    state = result["after"]
    assert "fieldagent01" in state["foreign"]
    assert f"iscsi/{sc.OTHER_IQN}/tpg1/lun3" in state["foreign"]
    luns = dict(map(tuple, state["luns"]))
    assert luns[9] == "fieldagent01"  # the field agent's LUN stays where it is
    assert luns[17] == sc.image(1).identity.name and luns[200] == sc.image(3).identity.name
    assert len(result["refused"]) == 2
    assert "not own" in result["refused"][0] and "not owned" in result["refused"][1]
    assert result["other_target_luns"] == [[sc.OTHER_IQN, 3, "fieldagent01"]]
    assert result["retire_not_due"] == []
    assert result["retire_actions"] == ["DeleteLun", "DeleteStorageObject"]
    assert result["retire_failed"] == {}
    retired = result["retired"]
    assert dict(map(tuple, retired["luns"])) == {9: "fieldagent01",
                                                 17: sc.image(1).identity.name}
    assert {so["name"] for so in retired["storage_objects"]} == {
        "fieldagent01", sc.image(1).identity.name}
    # saveconfig.json holds the whole target (foreign objects too); the previous one is kept.
    assert result["saved_names"] == sorted(["fieldagent01", sc.image(1).identity.name])
    assert result["backup_names"] == sorted(["fieldagent01", sc.image(1).identity.name,
                                             sc.image(3).identity.name])


def test_injected_eio_fails_only_that_action(runner: Runner) -> None:
    result = runner.run("eio")
    failed = result["failed"]
    assert set(failed) == {f"CreateLun:{sc.image(2).identity.name}",
                           f"CreateStorageObject:{sc.image(3).identity.name}"}
    assert all(v.startswith("temporary:") for v in failed.values())
    middle = dict(map(tuple, result["middle"]["luns"]))
    assert middle == {17: sc.image(1).identity.name, 6: sc.image(4).identity.name}
    assert result["second_pass_writes"] == 0
    assert dict(map(tuple, result["state"]["luns"])) == {
        17: sc.image(1).identity.name, 200: sc.image(2).identity.name,
        5: sc.image(3).identity.name, 6: sc.image(4).identity.name}


def test_killed_mid_batch_converges_on_the_next_run(runner: Runner) -> None:
    count = 40
    ctl = runner.mount.control
    ctl.reset_counters()
    proc = runner.popen("batch", count=count)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        while ctl.writes() < 57 and proc.poll() is None:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    partial = runner.run("read")
    assert len(partial["state"]["luns"]) < count
    result = runner.run("converge", claims={str(n): n for n in range(1, count + 1)})
    assert all(r["failed"] == {} for r in result["rounds"])
    assert result["second_pass_writes"] == 0
    assert result["state"]["luns"] == [[n, sc.image(n).identity.name]
                                       for n in range(1, count + 1)]


def test_half_made_objects_are_finished(runner: Runner) -> None:
    result = runner.run("leftovers")
    assert all(r["failed"] == {} for r in result["rounds"])
    assert result["second_pass_writes"] == 0
    assert result["state"]["luns"] == [[1, sc.image(1).identity.name],
                                       [2, sc.image(2).identity.name]]
    assert result["state"]["foreign"] == []


@pytest.mark.skipif(not (Path("/usr/bin/targetcli").exists() and shutil.which("unshare")
                         and shutil.which("dbus-daemon")),
                    reason="needs Debian targetcli-fb, unshare and dbus-daemon")
def test_saveconfig_round_trips_through_targetcli_restoreconfig(runner: Runner) -> None:
    original = runner.run("converge", claims={"1": 17, "2": 200, "3": 5})
    report = lio_targetcli.run(
        runner.env.workdir, [["restoreconfig", f"savefile={runner.env.saveconfig}"]],
        post=[runner.python, SCRIPT, "read", "{mount}", "{control}", runner.env.workdir,
              "{}"])
    [step] = report["steps"]
    assert step["rc"] == 0 and "Configuration restored" in step["out"], step
    assert report["post"]["rc"] == 0, report["post"]["err"]
    restored = json.loads(report["post"]["out"].splitlines()[-1])
    assert restored["state"] == original["state"]
    assert restored["writes"] == 0
