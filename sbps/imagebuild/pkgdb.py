"""Reading the installed-package lists of a root tree without running anything inside it.

Owns the dpkg status file (``var/lib/dpkg/status``: packages whose status is
``install ok installed``) and the rpm databases in their three formats: sqlite
(``rpmdb.sqlite``), ndb (``Packages.db``) and Berkeley DB (``Packages``), under
``var/lib/rpm`` or ``usr/lib/sysimage/rpm``. rpm databases are read with the host's
``rpm --dbpath DIR -qa`` (Debian's ``rpm`` reads sqlite and, read-only, Berkeley DB);
without it, or when it fails, the sqlite ``Name`` index is read with Python's sqlite3. A
database nothing here can read is reported as such, so the caller falls back to files on
disk. Blocking; reads only. Must not decide what an image needs (``check`` does).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sbps.imagebuild.rootview import RootView

RPM_DIRS = ("usr/lib/sysimage/rpm", "var/lib/rpm")
RPM_FILES = {"rpmdb.sqlite": "sqlite", "Packages.db": "ndb", "Packages": "bdb"}
_BACKENDS = {"rpmdb.sqlite": "sqlite", "Packages.db": "ndb", "Packages": "bdb_ro"}


@dataclass(frozen=True)
class PackageDb:
    """What one package database says: ``names`` installed, or ``error`` why unreadable."""

    kind: str  # dpkg | rpm-sqlite | rpm-ndb | rpm-bdb
    path: str
    names: frozenset[str] = field(default_factory=frozenset)
    reader: str = ""
    error: str = ""


def parse_dpkg_status(text: str) -> frozenset[str]:
    """Names of the packages a dpkg status file marks ``install ok installed``."""
    names: set[str] = set()
    for para in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in para.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
        if fields.get("package") and fields.get("status", "").split()[-1:] == ["installed"]:
            names.add(fields["package"].split(":")[0])
    return frozenset(names)


def _rpm_query(dbpath: Path, backend: str) -> tuple[frozenset[str] | None, str]:
    rpm = shutil.which("rpm")
    if rpm is None:
        return None, "the rpm program is not installed (apt-get install rpm)"
    # The backend is named: left to its default, rpm would create an empty sqlite
    # database next to an ndb or bdb one and answer "no packages".
    try:
        proc = subprocess.run([rpm, "--define", f"_db_backend {backend}", "--dbpath",
                               str(dbpath), "-qa", "--qf", "%{NAME}\\n"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"rpm failed: {exc}"
    names = frozenset(n.strip() for n in proc.stdout.splitlines() if n.strip())
    if proc.returncode != 0 or not names:
        last = (proc.stderr.strip().splitlines() or ["no packages read"])[-1]
        return None, f"rpm -qa ({backend}): {last}"
    return names, ""


def sqlite_names(path: Path) -> frozenset[str]:
    """Package names from the ``Name`` index of an rpm sqlite database. Opened read-write
    (a copy, see ``read_rpm``) so a pending ``-wal`` file is read too."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT DISTINCT key FROM Name").fetchall()
    finally:
        conn.close()
    return frozenset(str(r[0]) for r in rows if r[0])


def read_rpm(dbdir: Path, filename: str, shown: str) -> PackageDb:
    """Query a copy: rpm may create lock or journal files, which must not land in a tree
    that is about to become an image."""
    kind = f"rpm-{RPM_FILES[filename]}"
    with tempfile.TemporaryDirectory(prefix="sbps-rpmdb-") as tmp:
        for entry in dbdir.iterdir():
            if entry.is_file() and not entry.is_symlink():
                shutil.copy2(entry, tmp)
        return _read_rpm_copy(Path(tmp), filename, kind, shown)


def _read_rpm_copy(dbdir: Path, filename: str, kind: str, shown: str) -> PackageDb:
    names, error = _rpm_query(dbdir, _BACKENDS[filename])
    if names is not None:
        return PackageDb(kind, shown, names, reader="rpm --dbpath")
    if filename == "rpmdb.sqlite":
        try:
            return PackageDb(kind, shown, sqlite_names(dbdir / filename), reader="sqlite3")
        except sqlite3.Error as exc:
            error = f"{error}; sqlite3: {exc}"
    return PackageDb(kind, shown, error=error)


def read_all(view: RootView) -> list[PackageDb]:
    """Every package database found in the tree (usually one)."""
    out: list[PackageDb] = []
    status = view.file("var/lib/dpkg/status")
    if status is not None:
        try:
            text = status.read_text(encoding="utf-8", errors="replace")
            out.append(PackageDb("dpkg", "var/lib/dpkg/status", parse_dpkg_status(text),
                                 reader="dpkg status"))
        except OSError as exc:
            out.append(PackageDb("dpkg", "var/lib/dpkg/status", error=str(exc)))
    seen: set[str] = set()
    for rel in RPM_DIRS:
        resolved = view.resolve(rel)
        if resolved is None or resolved in seen:
            continue  # var/lib/rpm is often a link to usr/lib/sysimage/rpm
        seen.add(resolved)
        for filename in RPM_FILES:
            if view.kind(f"{resolved}/{filename}") != "file":
                continue
            dbdir = view.directory(resolved)
            if dbdir is None:
                out.append(PackageDb(f"rpm-{RPM_FILES[filename]}", f"{rel}/{filename}",
                                     error="cannot be read from this source"))
            else:
                out.append(read_rpm(dbdir, filename, f"{rel}/{filename}"))
            break
    return out
