"""A read-only view of a root tree: a directory, or a squashfs image read without mounting.

Owns path lookups *inside* an image: symbolic links are resolved against the image's own
root (``/usr/sbin/iscsid`` in the image, never on this host), so merged-/usr trees and
absolute links work. ``DirView`` reads a directory; ``SquashfsView`` lists the image once
with ``unsquashfs -lln`` and extracts only the files asked for (package databases, an
initrd) into a private temporary directory, removed by ``close()``. Blocking; reads only.
Must not decide what an image needs.
"""

from __future__ import annotations

import abc
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from sbps.core.errors import InputError

_KINDS = {"-": "file", "d": "dir", "l": "link"}


class RootView(abc.ABC):
    """Lookups common to both views; subclasses provide ``kind``, ``readlink``, ``listdir``
    and ``_materialize``."""

    label = ""

    @abc.abstractmethod
    def kind(self, rel: str) -> str | None:
        """Implemented by each view."""

    @abc.abstractmethod
    def readlink(self, rel: str) -> str:
        """Implemented by each view."""

    @abc.abstractmethod
    def listdir(self, rel: str) -> list[str]:
        """Implemented by each view."""

    @abc.abstractmethod
    def _materialize(self, rel: str) -> Path | None:
        """Implemented by each view."""

    def close(self) -> None:
        return None

    def resolve(self, rel: str) -> str | None:
        """``rel`` with every link followed inside the image; None if it does not exist."""
        todo = [p for p in rel.strip("/").split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            here = "/".join([*done, part])
            kind = self.kind(here)
            if kind is None:
                return None
            if kind == "link":
                hops += 1
                if hops > 40:
                    return None
                target = self.readlink(here)
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p not in ("", ".")] + todo
                continue
            done.append(part)
        return "/".join(done)

    def exists(self, rel: str) -> bool:
        return self.resolve(rel) is not None

    def is_file(self, rel: str) -> bool:
        resolved = self.resolve(rel)
        return resolved is not None and self.kind(resolved) == "file"

    def is_dir(self, rel: str) -> bool:
        resolved = self.resolve(rel)
        return resolved is not None and (resolved == "" or self.kind(resolved) == "dir")

    def entries(self, rel: str) -> list[str]:
        """Names in a directory (following links to it); empty if it is not one."""
        resolved = self.resolve(rel)
        if resolved is None or not self.is_dir(resolved):
            return []
        return sorted(self.listdir(resolved))

    def file(self, rel: str) -> Path | None:
        """A readable local path holding the file's bytes, or None."""
        resolved = self.resolve(rel)
        if resolved is None or self.kind(resolved) != "file":
            return None
        return self._materialize(resolved)

    def directory(self, rel: str) -> Path | None:
        """A readable local directory holding the directory's files, or None."""
        resolved = self.resolve(rel)
        if resolved is None or not self.is_dir(resolved):
            return None
        return self._materialize(resolved)


class DirView(RootView):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.label = str(root)

    def _path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def kind(self, rel: str) -> str | None:
        try:
            mode = os.lstat(self._path(rel)).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return "link"
        return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"

    def readlink(self, rel: str) -> str:
        return os.readlink(self._path(rel))

    def listdir(self, rel: str) -> list[str]:
        try:
            return os.listdir(self._path(rel))
        except OSError:
            return []

    def _materialize(self, rel: str) -> Path | None:
        return self._path(rel)


def parse_listing(text: str, prefix: str = "R") -> dict[str, tuple[str, str]]:
    """``unsquashfs -lln -d R`` output -> {relative path: (kind, link target)}."""
    out: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 6 or len(fields[0]) != 10:
            continue
        path = fields[5]
        target = ""
        if fields[0][0] == "l" and " -> " in path:
            path, target = path.split(" -> ", 1)
        if not path.startswith(prefix + "/"):
            continue  # the root itself, or not ours
        out[path[len(prefix) + 1:]] = (_KINDS.get(fields[0][0], "other"), target)
    return out


class SquashfsView(RootView):
    """A squashfs file, listed once; files are extracted on demand."""

    def __init__(self, image: Path, *, workdir: Path | None = None) -> None:
        self.image = Path(image)
        self.label = str(image)
        exe = shutil.which("unsquashfs")
        if exe is None:
            raise InputError(str(image), "SOURCE", "unsquashfs is not installed "
                             "(apt-get install squashfs-tools)")
        self.exe = exe
        proc = subprocess.run([exe, "-lln", "-d", "R", str(image)], capture_output=True,
                              text=True, errors="surrogateescape", check=False,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise InputError(str(image), "SOURCE", f"not a readable squashfs image: {detail}")
        self.entries_map = parse_listing(proc.stdout)
        self.children: dict[str, list[str]] = {}
        for path in self.entries_map:
            parent, _, name = path.rpartition("/")
            self.children.setdefault(parent, []).append(name)
        self.work = Path(tempfile.mkdtemp(prefix="sbps-check-", dir=workdir))
        self.extracted: set[str] = set()

    def kind(self, rel: str) -> str | None:
        if rel == "":
            return "dir"
        entry = self.entries_map.get(rel)
        return entry[0] if entry else None

    def readlink(self, rel: str) -> str:
        return self.entries_map[rel][1]

    def listdir(self, rel: str) -> list[str]:
        return list(self.children.get(rel, []))

    def _materialize(self, rel: str) -> Path | None:
        dest = self.work / "root"
        if rel not in self.extracted:
            proc = subprocess.run([self.exe, "-f", "-q", "-n", "-no-xattrs", "-d", str(dest),
                                   str(self.image), rel], capture_output=True, check=False,
                                  stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                return None
            self.extracted.add(rel)
        return dest / rel

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
