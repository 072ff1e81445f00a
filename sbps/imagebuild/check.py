"""``image check``: what an SBPS client needs, per maturity level, found in a root tree.

Owns evaluating ``requirements`` against a ``RootView``: package databases first (dpkg,
rpm), files on disk when there is no database or the package is not in it, systemd
``*.wants`` links for enabled services, the kernel and initrd (given as artifacts or
found in ``/boot``), dracut modules that handle ``root=sbps-s3`` and whether the initrd
carries one. The result is a frozen ``CheckReport`` with text and JSON renderings;
missing level-1 pieces are ``required`` problems (``--strict`` makes them an error).
Blocking; reads only. Must not build, upload or talk to IMS.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sbps.imagebuild import initrd as initrd_scan
from sbps.imagebuild import pkgdb, requirements
from sbps.imagebuild.requirements import LEVELS, Requirement, Service
from sbps.imagebuild.rootview import RootView

_KERNEL_RE = re.compile(r"^(vmlinuz|vmlinux|Image|bzImage|zImage)([-.].*)?$")
_INITRD_RE = re.compile(r"^(initrd|initramfs)([-.].*)?$")
_SKIP = re.compile(r"(\.hmac|\.sig|\.old|rescue.*|kdump.*|\.bak)$")


@dataclass(frozen=True)
class CheckFinding:
    key: str
    level: int
    title: str
    status: str  # ok | missing | unknown
    evidence: str = ""
    hint: str = ""

    @property
    def required(self) -> bool:
        return self.level == 1


@dataclass(frozen=True)
class Artifacts:
    """Kernel and initrd that come with the image rather than inside it (flags, IMS)."""

    kernel: str = ""
    initrd: str = ""
    initrd_file: Path | None = None


@dataclass(frozen=True)
class CheckReport:
    source: str
    distro: str
    family: str
    package_dbs: tuple[dict[str, Any], ...]
    findings: tuple[CheckFinding, ...]
    boot_kernel: str = ""
    boot_initrd: str = ""
    notes: tuple[str, ...] = field(default=())

    def missing_required(self) -> list[CheckFinding]:
        return [f for f in self.findings if f.required and f.status == "missing"]

    def level_status(self, level: int) -> str:
        found = [f for f in self.findings if f.level == level]
        if any(f.status == "missing" for f in found):
            return "incomplete"
        return "unverified" if any(f.status == "unknown" for f in found) else "complete"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "distro": self.distro, "family": self.family,
                "package_databases": list(self.package_dbs),
                "bootable": not self.missing_required(),
                "kernel": self.boot_kernel, "initrd": self.boot_initrd,
                "notes": list(self.notes),
                "levels": [{"level": n, "name": name, "status": self.level_status(n),
                            "required": n == 1,
                            "findings": [asdict(f) for f in self.findings if f.level == n]}
                           for n, name in LEVELS.items()]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_text(self) -> str:
        dbs = ", ".join(f"{d['kind']} {d['path']} ({d['count']} packages)" if not d["error"]
                        else f"{d['kind']} {d['path']} (unreadable: {d['error']})"
                        for d in self.package_dbs) or "none (files on disk only)"
        lines = [f"image check: {self.source}", f"  distribution: {self.distro or 'unknown'}",
                 f"  package databases: {dbs}"]
        marks = {"ok": "ok", "missing": "MISSING", "unknown": "??"}
        for n, name in LEVELS.items():
            tag = "required" if n == 1 else "optional"
            lines.append(f"level {n} ({tag}) {name}: {self.level_status(n)}")
            for f in (f for f in self.findings if f.level == n):
                more = f.evidence if f.status == "ok" else f.hint or f.evidence
                mark = marks[f.status] if f.required or f.status != "missing" else "absent"
                lines.append(f"  [{mark:>7}] {f.title}" + (f": {more}" if more else ""))
        lines.extend(f"note: {n}" for n in self.notes)
        missing = self.missing_required()
        lines.append("result: bootable through SBPS" if not missing else
                     f"result: NOT bootable through SBPS: missing {', '.join(f.key for f in missing)}")
        return "\n".join(lines) + "\n"


def os_release(view: RootView) -> tuple[str, str]:
    """(pretty name, family: debian | rhel | suse | '')."""
    path = view.file("etc/os-release") or view.file("usr/lib/os-release")
    fields: dict[str, str] = {}
    if path is not None:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip("\"'")
    ids = f"{fields.get('ID', '')} {fields.get('ID_LIKE', '')}".lower().split()
    family = next((f for f in ("debian", "suse", "rhel") if f in ids or
                   (f == "rhel" and {"fedora", "centos", "rocky"} & set(ids)) or
                   (f == "suse" and any(i.startswith(("sles", "opensuse")) for i in ids))
                   ), "")
    return fields.get("PRETTY_NAME", fields.get("NAME", "")), family


def _file_evidence(view: RootView, files: tuple[str, ...]) -> str | None:
    found = []
    for name in files:
        where = [name] if "/" in name else [f"{d}/{name}" for d in requirements.SBIN_DIRS]
        hit = next((w for w in where if view.is_file(w)), None)
        if hit is None:
            return None
        found.append("/" + hit)
    return ", ".join(found)


def _install_hint(req: Requirement, family: str) -> str:
    if req.hint:
        return req.hint
    names = dict(req.install)
    pkg = names.get(family) or names.get("") or " or ".join(sorted(set(names.values())))
    return f"install {pkg}"


def _requirement(req: Requirement, view: RootView, installed: frozenset[str],
                 have_db: bool, family: str) -> CheckFinding:
    pkg = next((p for p in req.packages if p in installed), None)
    if pkg:
        return CheckFinding(req.key, req.level, req.title, "ok", f"package {pkg}")
    files = _file_evidence(view, req.files) if req.files else None
    if files:
        why = " (not in the package database)" if have_db else ""
        return CheckFinding(req.key, req.level, req.title, "ok", f"files {files}{why}")
    return CheckFinding(req.key, req.level, req.title, "missing", hint=_install_hint(req, family))


def _service(svc: Service, view: RootView) -> CheckFinding:
    for unit_dir in requirements.UNIT_DIRS:
        for sub in view.entries(unit_dir):
            if not sub.endswith((".wants", ".requires")):
                continue
            for unit in svc.units:
                if view.kind(f"{view.resolve(unit_dir)}/{sub}/{unit}") is not None:
                    return CheckFinding(svc.key, 1, svc.title, "ok", f"/{unit_dir}/{sub}/{unit}")
    return CheckFinding(svc.key, 1, svc.title, "missing", hint=svc.hint)


def _boot_file(view: RootView, pattern: re.Pattern[str]) -> str:
    names = [n for n in view.entries("boot") if pattern.match(n) and not _SKIP.search(n)
             and view.is_file(f"boot/{n}")]
    if names:
        return "boot/" + sorted(names, key=len)[-1] if len(names) > 1 else "boot/" + names[0]
    for ver in view.entries("usr/lib/modules") or view.entries("lib/modules"):
        for base in ("usr/lib/modules", "lib/modules"):
            for n in view.entries(f"{base}/{ver}"):
                if pattern.match(n) and view.is_file(f"{base}/{ver}/{n}"):
                    return f"{base}/{ver}/{n}"
    return ""


def _dracut_modules(view: RootView) -> list[str]:
    """dracut module directories that have a file mentioning root=sbps-s3."""
    hits = []
    for rel in requirements.DRACUT_DIRS:
        local = view.directory(rel) if view.is_dir(rel) else None
        if local is None:
            continue
        for module in sorted(os.listdir(local)):
            for dirpath, _, files in os.walk(local / module):
                if any(_mentions(Path(dirpath) / f) for f in files):
                    hits.append(f"/{rel}/{module}")
                    break
    return hits


def _mentions(path: Path) -> bool:
    try:
        if path.is_symlink() or path.stat().st_size > 1 << 20:
            return False
        return requirements.SBPS_PROTOCOL in path.read_bytes()
    except OSError:
        return False


def run(view: RootView, artifacts: Artifacts = Artifacts()) -> CheckReport:
    """Inspect the tree behind ``view``; never raises for what the tree lacks."""
    distro, family = os_release(view)
    dbs = pkgdb.read_all(view)
    installed = frozenset().union(*(d.names for d in dbs)) if dbs else frozenset()
    have_db = any(not d.error for d in dbs)
    findings: list[CheckFinding] = []
    notes: list[str] = []
    kernel = artifacts.kernel or _boot_file(view, _KERNEL_RE)
    initrd_label = artifacts.initrd or _boot_file(view, _INITRD_RE)
    findings.append(CheckFinding("kernel", 1, "kernel", "ok" if kernel else "missing", kernel,
                            "" if kernel else "give --kernel or install a kernel in /boot"))
    findings.append(CheckFinding("initrd", 1, "initrd (dracut)", "ok" if initrd_label else
                            "missing", initrd_label, "" if initrd_label else
                            "give --initrd or build one with dracut in /boot"))
    for req in requirements.BOOT:
        found = _requirement(req, view, installed, have_db, family)
        if req is requirements.SBPS_DRACUT:
            modules = _dracut_modules(view)
            if modules:
                found = CheckFinding(req.key, 1, req.title, "ok", ", ".join(
                    [found.evidence] * (found.status == "ok") + modules))
        findings.append(found)
        if req is requirements.MULTIPATH:
            findings.extend(_service(s, view) for s in requirements.SERVICES)
    initrd_file = artifacts.initrd_file or (view.file(initrd_label) if initrd_label and
                                            not artifacts.initrd else None)
    if initrd_file is not None:
        says = initrd_scan.mentions(initrd_file, requirements.SBPS_PROTOCOL)
        status = {True: "ok", False: "missing", None: "unknown"}[says]
        findings.append(CheckFinding("initrd-sbps", 1, "initrd handles root=sbps-s3", status,
                                initrd_label if says else "",
                                {False: "rebuild the initrd with dracut after installing "
                                 "csm-sbps-dracut", None: "cannot decompress the initrd "
                                 "here; not verified"}.get(says, "")))
    else:
        notes.append("the initrd was not available to look inside; whether it handles "
                     "root=sbps-s3 is not verified")
    for req in (*requirements.MANAGED, *requirements.PRODUCTION):
        findings.append(_requirement(req, view, installed, have_db, family))
    return CheckReport(
        source=view.label, distro=distro, family=family,
        package_dbs=tuple({"kind": d.kind, "path": d.path, "count": len(d.names),
                           "reader": d.reader, "error": d.error} for d in dbs),
        findings=tuple(findings), boot_kernel=kernel, boot_initrd=initrd_label,
        notes=tuple(notes))
