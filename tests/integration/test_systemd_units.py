"""The shipped systemd units pass ``systemd-analyze verify`` (Debian's systemd package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A root with the host's base units and an executable where ExecStart points."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    (tmp_path / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", tmp_path / "usr/lib/systemd/system", symlinks=True)
    for name in ("usr/lib/sbps/bin/sbps-marshal", "usr/sbin/tgtd", "usr/sbin/tgtadm",
                 "usr/sbin/tgt-admin", "bin/sh"):
        exe = tmp_path / name
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    (tmp_path / "etc/systemd/system/tgt.service.d").mkdir(parents=True)
    return tmp_path


def verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", unit],
                          capture_output=True, text=True, timeout=60)


def test_marshal_unit_verifies(fake_root: Path) -> None:
    shutil.copy(ROOT / "systemd/sbps-marshal.service", fake_root / "etc/systemd/system/")
    result = verify(fake_root, "/etc/systemd/system/sbps-marshal.service")
    assert result.returncode == 0, result.stderr
    text = (ROOT / "systemd/sbps-marshal.service").read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text
    assert "\nProtectKernelTunables=" not in text  # configfs must stay writable


def test_tgt_dropin_verifies(fake_root: Path) -> None:
    shutil.copy(ROOT / "systemd/tgtd-sbps.conf", fake_root / "etc/systemd/system/tgt.service.d/sbps.conf")
    result = verify(fake_root, "tgt.service")
    assert result.returncode == 0, result.stderr
