"""Fixtures of the realkernel lane: one qemu guest with a real Debian kernel per session.

``guest`` builds (or reuses) the guest image, boots it once and stops it by pid at the end;
tests reconfigure it through its command agent instead of rebooting. The guest reaches the
host's S3 and IMS servers at fixed addresses (``S3_GUEST`` and ``IMS_GUEST``) through qemu
guest forwards, which a test points at its servers' ports. ``guest_pytest`` runs a pytest
module inside the guest and reads back its junit XML from the shared ``/out`` folder.
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.vm.build import ensure_image
from tests.vm.qemu import Guest

S3_GUEST = ("10.0.2.100", 9000)
IMS_GUEST = ("10.0.2.101", 8080)
HOST_TOOLS = ("qemu-system-x86_64", "debootstrap", "cpio", "apt-get", "dpkg-deb", "chroot")


@dataclass
class GuestReport:
    """One guest pytest run, from its junit XML."""

    path: Path
    tests: int = 0
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    output: str = ""

    def summary(self) -> str:
        lines = [f"{self.tests} tests, {len(self.passed)} passed, {len(self.failed)} failed, "
                 f"{len(self.skipped)} skipped ({self.path})"]
        lines += [f"FAILED {name}:\n{text}" for name, text in self.failed.items()]
        lines += [f"SKIPPED {name}: {text}" for name, text in self.skipped.items()]
        return "\n".join(lines)


def read_junit(path: Path) -> GuestReport:
    report = GuestReport(path)
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        report.tests += 1
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            report.failed[name] = (bad.get("message") or "") + "\n" + (bad.text or "")[-4000:]
        elif skip is not None:
            report.skipped[name] = skip.get("message") or ""
        else:
            report.passed.append(name)
    return report


@pytest.fixture(scope="session")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    if os.geteuid() != 0:
        pytest.skip("the realkernel lane builds the guest as root (debootstrap, chroot)")
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"host tools missing: {', '.join(missing)} (scripts/install-deps)")
    image = ensure_image()
    vm = Guest(image, tmp_path_factory.mktemp("guest"))
    vm.forward("s3", *S3_GUEST)
    vm.forward("ims", *IMS_GUEST)
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


@pytest.fixture
def guest_pytest(guest: Guest) -> Callable[..., GuestReport]:
    """``guest_pytest(module, name, timeout=900) -> GuestReport``: run ``module`` (a path in
    the repository) with the guest's python3; fails when the run produced no junit XML."""

    def run(module: str, name: str, timeout: float = 900) -> GuestReport:
        xml = guest.out / f"{name}.xml"
        xml.unlink(missing_ok=True)
        result = guest.run(
            ["python3", "-m", "pytest", "-p", "no:cacheprovider", "--noconftest",
             "-c", "/src/tests/realkernel/guest/guest-pytest.ini", "--rootdir", "/src",
             "-rA", f"--junitxml=/out/{name}.xml", f"/src/{module}"],
            timeout=timeout, check=False)
        output = result.stdout[-20000:] + result.stderr[-5000:]
        if not xml.exists():
            raise AssertionError(f"the guest's pytest wrote no report (rc {result.rc}):\n"
                                 f"{output}")
        report = read_junit(xml)
        report.output = output
        print(report.summary())
        return report

    return run
