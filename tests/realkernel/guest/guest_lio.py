"""The LIO backend's integration tests on the real kernel: run by pytest INSIDE the guest.

The host's ``tests/realkernel/test_lio_guest.py`` starts this module in the guest
(``python3 -m pytest ... guest_lio.py``, junit XML to the shared ``/out``). The test bodies
shared with the emulation's suite are imported from ``tests.integration.test_lio_backend``
and run unchanged; the scenarios are the same ``lio_scenarios`` functions, as subprocesses
with Debian's rtslib-fb 2.1.75 or PyPI's 2.2.x (``/opt/rtslib22``). What the emulation's side
channel did (write counting, fault injection) is done in the scenario process by
``audit_control``; what only a real initiator can do (reads, logins) is in the daemon test.
The file name does not start with ``test_`` so the host never collects it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from configfs.rtslib_compat import point_rtslib_at, restore_rtslib
from tests.integration import lio_scenarios as sc
from tests.integration.test_lio_backend import (  # noqa: F401 - collected here too
    test_a_read_sees_changes_behind_its_back,
    test_converge_from_empty_then_zero_writes,
    test_foreign_objects_survive_and_are_refused,
    test_injected_eio_fails_only_that_action,
    test_open_access_attributes_match_the_reconciler,
    test_saveconfig_reuses_dumps_and_equals_a_full_dump,
)
from tests.realkernel.guest.lio_tree import clear

CONFIGFS = "/sys/kernel/config"
TARGET = f"{CONFIGFS}/target"
SCRIPT = str(Path(sc.__file__).resolve())
RTSLIB22 = "/opt/rtslib22"


def _pythonpath(kind: str) -> str:
    base = os.environ.get("PYTHONPATH", "/src:/opt/sbps-deps")
    return f"{RTSLIB22}:{base}" if kind == "pypi" else base


class KernelRunner:
    """Runs a scenario as a subprocess on the kernel's configfs with one rtslib."""

    python = sys.executable

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.env = sc.Env(CONFIGFS, "", str(workdir))

    def args(self, name: str, args: dict[str, Any]) -> list[str]:
        return [self.python, SCRIPT, name, CONFIGFS, "", self.env.workdir, json.dumps(args)]

    def environ(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": _pythonpath(self.kind)}

    def run(self, name: str, **args: Any) -> dict[str, Any]:
        proc = subprocess.run(self.args(name, args), capture_output=True, text=True,
                              timeout=900, check=False, env=self.environ())
        assert proc.returncode == 0, proc.stderr[-6000:]
        result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
        return result

    def popen(self, name: str, **args: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(self.args(name, args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.environ())

    def rtslib_path(self) -> str:
        code = "import rtslib_fb, os; print(os.path.dirname(rtslib_fb.__file__))"
        out = subprocess.run([self.python, "-c", code], capture_output=True, text=True,
                             check=True, env=self.environ()).stdout.strip()
        return out


def clear_kernel_target() -> None:
    clear(TARGET)


@pytest.fixture(params=["debian", "pypi"])
def runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KernelRunner]:
    clear_kernel_target()
    runner = KernelRunner(request.param, tmp_path)
    where = runner.rtslib_path()
    expected = RTSLIB22 if request.param == "pypi" else "/usr/lib/python3/dist-packages"
    assert where.startswith(expected), where
    yield runner
    clear_kernel_target()


def _kernel_luns() -> list[str]:
    base = f"{TARGET}/iscsi/{sc.IQN}/tpgt_1/lun"
    return os.listdir(base) if os.path.isdir(base) else []


def test_kernel_is_real() -> None:
    """Not the emulation: the kernel's configfs, with LIO's own version strings."""
    with open("/proc/mounts") as f:
        assert f" {CONFIGFS} configfs " in f.read()
    with open(f"{TARGET}/version") as f:
        assert "Target Engine Core ConfigFS Infrastructure" in f.read()


def test_killed_mid_batch_converges_on_the_next_run(runner: KernelRunner) -> None:
    """As on the emulation (which uses 40 images), but with 24 images, the kill landing when
    the kernel shows 8 LUNs: software emulation makes each configfs call slow."""
    count = 24
    proc = runner.popen("batch", count=count)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        while len(_kernel_luns()) < 8 and proc.poll() is None:
            time.sleep(0.01)
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


def test_saveconfig_restores_on_the_kernel(runner: KernelRunner) -> None:
    """What target.service does at boot: Debian's rtslib restores the backend's save file
    onto an empty kernel target, and the backend reads the same state without writing."""
    from rtslib_fb import RTSRoot

    original = runner.run("converge", claims={"1": 17, "2": 200, "3": 5})
    clear_kernel_target()
    assert _kernel_luns() == []
    with open(f"{TARGET}/dbroot") as f:
        saved = point_rtslib_at(TARGET, f.read().strip())
    try:
        errors = RTSRoot().restore_from_file(runner.env.saveconfig)
    finally:
        restore_rtslib(saved)
    assert not errors, errors
    restored = runner.run("read")
    assert restored["state"] == original["state"]
    assert restored["writes"] == 0


def test_fresh_luns_have_zero_counters_and_no_sessions(runner: KernelRunner) -> None:
    result = runner.run("converge", claims={"1": 17, "2": 3})
    assert set(result["stats"]) == {"17", "3"}
    for stats in result["stats"].values():
        assert stats["read_bytes"] == 0 and stats["commands"] == 0
    assert result["sessions"] == []
