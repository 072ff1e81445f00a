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
    for name in ("usr/lib/sbps/bin/sbps-marshal", "usr/bin/sbpsctl", "usr/sbin/tgtd",
                 "usr/sbin/tgtadm", "usr/sbin/tgt-admin", "bin/sh"):
        exe = tmp_path / name
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    (tmp_path / "etc/systemd/system/tgt.service.d").mkdir(parents=True)
    return tmp_path


def verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", unit],
                          capture_output=True, text=True, timeout=60)


def settings(path: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file (comments skipped), values in order."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_marshal_unit_verifies(fake_root: Path) -> None:
    shutil.copy(ROOT / "systemd/sbps-marshal.service", fake_root / "etc/systemd/system/")
    result = verify(fake_root, "/etc/systemd/system/sbps-marshal.service")
    assert result.returncode == 0, result.stderr
    assert "sbps-marshal.service" not in result.stderr, result.stderr  # no warnings either


def test_marshal_unit_has_what_the_issue_asks() -> None:
    s = settings(ROOT / "systemd/sbps-marshal.service")
    assert s["Type"] == ["notify"] and int(s["WatchdogSec"][0]) > 0
    assert s["Restart"] == ["always"]
    assert int(s["StartLimitBurst"][0]) > 1 and int(s["StartLimitIntervalSec"][0]) > 0
    after = s["After"][0].split()
    assert "target.service" in after and "network-online.target" in after
    assert "network-online.target" in s["Wants"][0].split()
    assert s["ExecStart"][0].endswith("--config /etc/sbps/marshal.toml")
    assert s["EnvironmentFile"] == ["-/etc/sysconfig/sbps-marshal"]  # optional
    # configfs must stay writable: no ProtectKernelTunables, /sys/kernel/config writable.
    assert "ProtectKernelTunables" not in s
    rw = s["ReadWritePaths"][0].split()
    assert "/var/lib/sbps" in rw and "-/sys/kernel/config" in rw and "-/etc/target" in rw
    assert s["ProtectSystem"] == ["strict"] and s["NoNewPrivileges"] == ["yes"]
    # The field's S3 credentials are in /root: home stays readable.
    assert s["ProtectHome"] == ["read-only"]
    assert int(s["LimitNOFILE"][0]) >= 65536


def exposure(unit: Path) -> float:
    """``systemd-analyze security --offline=true``'s overall exposure of a unit file."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                             str(unit)], capture_output=True, text=True, timeout=60)
    line = next(x for x in result.stdout.splitlines() if "Overall exposure level" in x)
    return float(line.split(":")[1].split()[0])


def test_marshal_unit_exposure_is_at_most_4(tmp_path: Path) -> None:
    unit = ROOT / "systemd/sbps-marshal.service"
    assert exposure(unit) <= 4.0
    s = settings(unit)
    # Only what the daemon needs (the unit's comments say why each is there).
    assert s["CapabilityBoundingSet"] == ["CAP_DAC_OVERRIDE CAP_NET_BIND_SERVICE CAP_SYS_ADMIN"]
    assert "@system-service" in s["SystemCallFilter"]
    assert s["ProtectKernelModules"] == ["yes"] and s["PrivateDevices"] == ["yes"]
    # Negative control: the same unit without its hardening scores worse than 4.0.
    bare = tmp_path / "sbps-marshal.service"
    drop = ("CapabilityBoundingSet", "SystemCallFilter", "PrivateDevices", "DevicePolicy",
            "ProtectKernelModules", "ProtectClock", "ProtectProc", "MemoryDenyWriteExecute",
            "PrivateMounts")
    bare.write_text("\n".join(x for x in unit.read_text().splitlines()
                              if not x.startswith(drop)) + "\n")
    assert exposure(bare) > 4.0


def test_tgt_dropin_verifies(fake_root: Path) -> None:
    shutil.copy(ROOT / "systemd/tgtd-sbps.conf", fake_root / "etc/systemd/system/tgt.service.d/sbps.conf")
    result = verify(fake_root, "tgt.service")
    assert result.returncode == 0, result.stderr
    s = settings(ROOT / "systemd/tgtd-sbps.conf")
    assert s["Before"] == ["sbps-marshal.service"]
    assert s["ExecStartPost"][0].startswith("-/usr/bin/sbpsctl reconcile")


def test_site_drop_in_keeps_working(fake_root: Path) -> None:
    """A site's drop-in for the field agent's unit (/etc/systemd/system/sbps-marshal.service.d/)
    applies to sbps's unit of the same name, installed where the RPM puts it. Negative
    control: a drop-in that points ExecStart at the field agent's program (gone with its
    package; docs/upgrade.md) fails the same verification, so drop-ins are read."""
    shutil.copy(ROOT / "systemd/sbps-marshal.service", fake_root / "usr/lib/systemd/system/")
    drop_ins = fake_root / "etc/systemd/system/sbps-marshal.service.d"
    drop_ins.mkdir(parents=True)
    (drop_ins / "site.conf").write_text(
        "[Service]\nEnvironment=SBPS_MARSHAL_IMS_TAGGING=false\n"
        "Environment=SBPS_MARSHAL_SPIRE_JWT_AUDIENCE=system-compute\nRestartSec=180s\n")
    result = verify(fake_root, "sbps-marshal.service")
    assert result.returncode == 0, result.stderr
    field = "/usr/lib/sbps-marshal/bin/sbps-marshal"
    (drop_ins / "exec.conf").write_text(f"[Service]\nExecStart=\nExecStart={field}\n")
    result = verify(fake_root, "sbps-marshal.service")
    assert result.returncode != 0 and field in result.stderr, result.stderr
