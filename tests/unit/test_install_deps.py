"""``scripts/install-deps``: waits for apt's lock, and leaves no service it installed
enabled or running (the tests start their own servers on loopback)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-deps"


def _packages() -> list[str]:
    """SERVER_PACKAGES and PULLED_IN (their dependencies with units, such as ceph-osd's lvm2)."""
    words = []
    for name in ("SERVER_PACKAGES", "PULLED_IN"):
        body = re.search(name + r"=\((.*?)\)", SCRIPT.read_text(), re.S)
        assert body is not None, name
        words += [w for line in body.group(1).splitlines()
                  for w in line.split("#", 1)[0].split()]
    return words


def test_every_apt_call_waits_for_the_lock() -> None:
    text = SCRIPT.read_text()
    assert 'DPkg::Lock::Timeout=$LOCK_WAIT' in text
    calls = [line.strip() for line in text.splitlines()
             if re.search(r"\bapt-get\b", line) and not line.strip().startswith(("#", "echo"))]
    assert calls and all(c.startswith(("APT=(apt-get", '"${APT[@]}"')) for c in calls), calls


def test_no_installed_service_is_enabled() -> None:
    """On the machine `make test` set up (CI: a fresh one), no unit of a server package the
    script installed is enabled. Off CI a developer's own enabled services are theirs: skipped."""
    if not IN_CI:
        pytest.skip("checked on CI's fresh machine only (here units may be the admin's own)")
    assert shutil.which("systemctl"), "systemctl is missing"
    enabled = []
    for pkg in _packages():
        listing = subprocess.run(["dpkg-query", "-L", pkg], capture_output=True, text=True)
        for path in listing.stdout.splitlines():
            if re.fullmatch(r"/(usr/)?lib/systemd/system/[^/@]+\.(service|socket|timer|path|target)",
                            path):
                unit = Path(path).name
                state = subprocess.run(["systemctl", "is-enabled", unit], capture_output=True,
                                       text=True).stdout.strip()
                if state == "enabled":
                    enabled.append(f"{pkg}: {unit}")
    assert not enabled, enabled
