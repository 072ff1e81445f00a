"""What ``image build`` and ``image check`` read: a directory, a tar, or an OCI image.

Owns recognising SOURCE and turning it into a root tree: a directory is used in place
(never copied); a tar archive is unpacked into a private temporary directory; an OCI image
layout (directory or archive) or a ``docker save`` archive has the layers of its manifest
applied in order, whiteouts honoured, each layer's sha256 checked against its digest.
Unpacking uses ``unpack`` (ownership, modes, xattrs, capabilities kept), so it needs root
like any rootfs build. Temporary trees are removed when the context ends. Blocking. Must
not build squashfs images or upload.
"""

from __future__ import annotations

import enum
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbps.core.errors import InputError
from sbps.imagebuild import unpack

Progress = Callable[[str], None]
OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json")
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")
_ROOTFS_DIRS = ("etc", "usr", "bin", "sbin", "lib", "var")


class SourceKind(enum.Enum):
    DIRECTORY = "directory"
    TAR = "tar"
    OCI_LAYOUT = "oci-layout"  # an OCI image layout or an unpacked docker save


@dataclass(frozen=True)
class Source:
    path: Path
    kind: SourceKind


def _quiet(_: str) -> None:
    return None


def is_layout(path: Path) -> bool:
    """An OCI layout or an unpacked ``docker save``: image metadata, no root tree."""
    if (path / "oci-layout").is_file() and (path / "index.json").is_file():
        return True
    return (path / "manifest.json").is_file() and not any(
        (path / d).is_dir() for d in _ROOTFS_DIRS)


def detect(source: str | Path) -> Source:
    """Recognise SOURCE; a missing or unreadable SOURCE raises InputError naming it."""
    path = Path(source)
    if not path.exists():
        raise InputError(str(source), "SOURCE", "does not exist")
    if path.is_dir():
        if is_layout(path):
            return Source(path, SourceKind.OCI_LAYOUT)
        return Source(path, SourceKind.DIRECTORY)
    if not path.is_file():
        raise InputError(str(source), "SOURCE", "is neither a directory nor a file")
    try:
        ok = tarfile.is_tarfile(path) or path.open("rb").read(4) == b"\x28\xb5\x2f\xfd"
    except OSError as exc:
        raise InputError(str(source), "SOURCE", f"cannot read: {exc.strerror}") from exc
    if not ok:
        raise InputError(str(source), "SOURCE", "is not a directory, a tar archive (plain, "
                         "gzip, bzip2, xz, zstd) or an OCI/docker image archive")
    return Source(path, SourceKind.TAR)


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(what, path.name, f"unreadable or not JSON: {exc}") from exc


def _blob(layout: Path, digest: Any, what: str) -> Path:
    if not isinstance(digest, str) or ":" not in digest:
        raise InputError(what, "digest", f"{digest!r} is not <algorithm>:<hex>")
    alg, _, hexd = digest.partition(":")
    if alg != "sha256" or not hexd.isalnum() or len(hexd) != 64:
        raise InputError(what, "digest", f"{digest!r}: only sha256 digests are supported")
    path = layout / "blobs" / alg / hexd
    if not path.is_file():
        raise InputError(what, "blobs", f"blob {digest} is missing")
    return path


def _pick(entries: list[Any], arch: str, what: str) -> dict[str, Any]:
    if not entries:
        raise InputError(what, "manifests", "empty: the image has no manifest")
    if len(entries) == 1:
        return dict(entries[0])
    want = OCI_ARCH.get(arch, arch)
    for entry in entries:
        plat = entry.get("platform") or {}
        if plat.get("architecture") == want and plat.get("os", "linux") == "linux":
            return dict(entry)
    found = sorted({str((e.get("platform") or {}).get("architecture")) for e in entries})
    raise InputError(what, "manifests", f"no linux/{want} manifest (has {', '.join(found)})")


def layer_paths(layout: Path, arch: str) -> list[Path]:
    """The layer files of the image in ``layout``, lowest first."""
    what = f"image layout {layout}"
    if (layout / "index.json").is_file():
        doc = _load_json(layout / "index.json", what)
        for _ in range(4):  # an index may point to an index (multi-platform)
            entry = _pick(list(doc.get("manifests") or []), arch, what)
            doc = _load_json(_blob(layout, entry.get("digest"), what), what)
            if doc.get("mediaType") in _INDEX_TYPES or "manifests" in doc:
                continue
            break
        if doc.get("mediaType", _MANIFEST_TYPES[0]) not in _MANIFEST_TYPES or \
                not isinstance(doc.get("layers"), list):
            raise InputError(what, "manifest", "not an image manifest with layers")
        return [_blob(layout, layer.get("digest"), what) for layer in doc["layers"]]
    doc = _load_json(layout / "manifest.json", what)
    if not isinstance(doc, list) or not doc or not isinstance(doc[0].get("Layers"), list):
        raise InputError(what, "manifest.json", "not a docker save manifest (a list with "
                         "Layers)")
    out = []
    for rel in doc[0]["Layers"]:
        path = (layout / str(rel)).resolve()
        if not str(path).startswith(str(layout.resolve()) + os.sep) or not path.is_file():
            raise InputError(what, "manifest.json", f"layer {rel!r} is missing")
        out.append(path)
    return out


def apply_layers(layout: Path, dest: Path, arch: str, progress: Progress = _quiet) -> int:
    """Apply every layer into ``dest`` in order; returns the layer count."""
    layers = layer_paths(layout, arch)
    for n, path in enumerate(layers, 1):
        what = f"layer {n}/{len(layers)} ({path.name[:19]})"
        progress(f"applying {what}")
        with path.open("rb") as raw:
            reader = unpack.HashingReader(raw)
            buffered = _Peekable(reader)
            with unpack.open_stream(buffered, what) as tf:
                unpack.extract(tf, dest, what, layer=True)
            got = reader.drain()
        if path.parent.name == "sha256" and got != path.name:
            raise InputError(what, "digest", f"content sha256 {got} does not match the blob "
                             f"name {path.name}: the layer is corrupt")
    return len(layers)


class _Peekable:
    """Adds ``peek`` (for sniffing compression) to a reader that has only ``read``."""

    def __init__(self, raw: unpack.HashingReader) -> None:
        self.raw = raw
        self.buf = b""

    def peek(self, n: int) -> bytes:
        if len(self.buf) < n:
            self.buf += self.raw.read(n - len(self.buf))
        return self.buf

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data, self.buf = self.buf + self.raw.read(-1), b""
            return data
        if self.buf:
            data, self.buf = self.buf[:n], self.buf[n:]
            return data
        return self.raw.read(n)


def _fresh_root(parent: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=parent))
    root.chmod(0o755)  # mkdtemp's 0700 would become the image's root directory mode
    os.chown(root, 0, 0)
    return root


@contextmanager
def root_tree(source: Source, *, arch: str, workdir: Path | None = None,
              progress: Progress = _quiet) -> Iterator[Path]:
    """The root tree of SOURCE: the directory itself, or an unpacked temporary tree."""
    if source.kind is SourceKind.DIRECTORY:
        yield source.path
        return
    work = Path(tempfile.mkdtemp(prefix="sbps-build-", dir=workdir))
    try:
        if source.kind is SourceKind.OCI_LAYOUT:
            root = _fresh_root(work)
            apply_layers(source.path, root, arch, progress)
            yield root
            return
        progress(f"unpacking {source.path}")
        root = _fresh_root(work)
        with source.path.open("rb") as raw, \
                unpack.open_stream(_Peekable(unpack.HashingReader(raw)),
                                   str(source.path)) as tf:
            unpack.extract(tf, root, str(source.path))
        if is_layout(root):
            progress(f"{source.path} is an image archive; applying its layers")
            image_root = _fresh_root(work)
            apply_layers(root, image_root, arch, progress)
            shutil.rmtree(root)
            root = image_root
        yield root
    finally:
        shutil.rmtree(work, ignore_errors=True)
