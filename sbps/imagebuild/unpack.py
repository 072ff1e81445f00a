"""Unpacking tar streams into a root tree as root, attributes and all, safely.

Owns extracting one tar stream (plain, gzip, bzip2, xz or zstd) into a directory with
numeric ownership, modes, device nodes, hard links and extended attributes (file
capabilities included), and applying OCI whiteouts when the stream is an image layer.
Python's tarfile drops xattrs, so the ``SCHILY.xattr.*`` (GNU tar, star) and
``LIBARCHIVE.xattr.*`` (bsdtar) PAX records are applied here with ``os.setxattr``, after
tarfile's chown, since a chown clears ``security.capability``. A member whose name is
absolute, climbs out with ``..`` or would be written through a symbolic link leading out
of the tree is refused (naming the member), never extracted. Blocking. Must not know
where the stream comes from (``source`` decides) and must not build or upload.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sbps.core.errors import InputError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class HashingReader:
    """A read-only file object that hashes what passes through (to verify OCI blobs)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> str:
        while self.read(1 << 20):
            pass
        return self.hash.hexdigest()


@contextmanager
def open_stream(fh: Any, what: str) -> Iterator[tarfile.TarFile]:
    """A tarfile over a byte stream of any supported compression, read once in order."""
    head = fh.peek(8)[:8] if hasattr(fh, "peek") else b""
    if head.startswith(_ZSTD_MAGIC):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise InputError(what, "compression", "zstd-compressed, but the zstd program "
                             "is not installed (apt-get install zstd)")
        proc = subprocess.Popen([zstd, "-dc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        feeder = _Feeder(fh, proc.stdin)
        feeder.start()
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
                yield tf
        finally:
            proc.stdout.close()
            feeder.join()
            if proc.wait() != 0 and not feeder.broken:
                raise InputError(what, "compression", f"zstd -dc failed ({proc.returncode})")
        return
    try:
        with tarfile.open(fileobj=fh, mode="r|*") as tf:
            yield tf
    except tarfile.ReadError as exc:
        raise InputError(what, "archive", f"not a tar archive Python can read: {exc}") from exc


class _Feeder:
    """Copies a file object into a pipe from a thread (zstd reads while tarfile pulls)."""

    def __init__(self, src: Any, dst: IO[bytes]) -> None:
        self.src, self.dst, self.broken = src, dst, False
        self.thread = threading.Thread(target=self._run, name="zstd-feeder", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.thread.join()

    def _run(self) -> None:
        try:
            while chunk := self.src.read(1 << 20):
                self.dst.write(chunk)
        except BrokenPipeError:
            self.broken = True
        finally:
            try:
                self.dst.close()
            except BrokenPipeError:
                self.broken = True


def member_name(member: tarfile.TarInfo, what: str) -> str:
    """The member's path relative to the root ('' for the root), or InputError."""
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    norm = posixpath.normpath(name) if name not in ("", ".") else ""
    if norm == ".":
        norm = ""
    if name.startswith("/") or norm.startswith("../") or norm == "..":
        raise InputError(what, f"member {member.name!r}", "absolute or outside the tree; "
                         "refusing to extract it")
    return norm


def _inside(root: Path, path: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top + os.sep)


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            out.append((key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape")))
        elif key.startswith("LIBARCHIVE.xattr."):
            name = key[len("LIBARCHIVE.xattr."):]
            out.append((name, base64.b64decode(value + "=" * (-len(value) % 4))))
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _opaque(dest: Path, rel_dir: str, created: set[str]) -> None:
    """Hide what lower layers put in ``rel_dir``; keep what this layer created."""
    top = dest / rel_dir
    if not top.is_dir() or top.is_symlink():
        return
    prefixes = {posixpath.dirname(c) for c in created}
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        for name in filenames + dirnames:
            path = Path(dirpath) / name
            rel = path.relative_to(dest).as_posix()
            if rel in created or any(p == rel or p.startswith(rel + "/") for p in prefixes):
                continue
            _remove(path)


def extract(tf: tarfile.TarFile, dest: Path, what: str, *, layer: bool = False) -> int:
    """Extract every member of ``tf`` into ``dest``; returns the number of members.

    ``layer`` applies OCI whiteouts to what earlier layers left in ``dest``.
    """
    created: set[str] = set()
    count = 0
    for member in tf:
        count += 1
        rel = member_name(member, what)
        base = posixpath.basename(rel)
        parent = posixpath.dirname(rel)
        if not _inside(dest, dest / parent):
            raise InputError(what, f"member {member.name!r}", "its directory is a symbolic "
                             "link leading out of the tree; refusing to extract it")
        if layer and base == OPAQUE:
            _opaque(dest, parent, created)
            continue
        if layer and base.startswith(WHITEOUT):
            victim = posixpath.join(parent, base[len(WHITEOUT):])
            if victim not in created:
                _remove(dest / victim)
            continue
        if member.islnk():
            target = member_name(tarfile.TarInfo(member.linkname), what)
            if not _inside(dest, dest / target):
                raise InputError(what, f"member {member.name!r}", "hard link target "
                                 f"{member.linkname!r} is outside the tree")
            member.linkname = target
        path = dest / rel if rel else dest
        if rel and os.path.lexists(path):
            # A later entry or layer replaces what is there; it never writes through it.
            real_dir = path.is_dir() and not path.is_symlink()
            if not real_dir:
                path.unlink()
            elif not member.isdir():
                shutil.rmtree(path)
        member.name = rel or "."
        try:
            tf.extract(member, dest, set_attrs=True, numeric_owner=True,
                       filter="fully_trusted")
        except (OSError, tarfile.TarError) as exc:
            raise InputError(what, f"member {member.name!r}", f"cannot extract: {exc}") from exc
        created.add(rel)
        for key, value in _xattrs(member):
            if member.issym():
                continue  # Linux allows no user xattrs on links; others are rare and lost
            try:
                os.setxattr(path, key, value, follow_symlinks=False)
            except OSError as exc:
                raise InputError(what, f"member {member.name!r}", f"cannot set extended "
                                 f"attribute {key}: {exc.strerror}") from exc
    return count
