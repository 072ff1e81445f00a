"""The local half of ``image build``: SOURCE to a checked, reproducible squashfs and digest.

Owns validating a build request (every error names its field: SOURCE, --arch,
--compression, --kernel, --initrd), the step list ``--dry-run`` prints, and ``prepare``:
unpack SOURCE (``source``), run ``check``, build the squashfs (``squashfs``), take the
kernel and initrd from the flags or from the tree's ``/boot``, and compute the build
digest that keys idempotent re-runs. The build digest is the SHA-256 of the squashfs
bytes (reproducible, so the same input gives the same digest), the kernel, the initrd,
the boot parameters and the architecture. Blocking. Must not upload or talk to IMS: the
CLI does that with the result.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sbps.core.errors import InputError
from sbps.core.model import Arch
from sbps.imagebuild import check, source
from sbps.imagebuild.rootview import DirView
from sbps.imagebuild.squashfs import make_squashfs

BUILD_COMPRESSIONS = ("xz", "zstd", "gzip")
DIGEST_KEY = "sbps-build-digest"
Say = Callable[[str], None]


@dataclass(frozen=True)
class BuildRequest:
    source: str
    name: str
    arch: str = "x86_64"
    kernel: str | None = None
    initrd: str | None = None
    boot_parameters: str | None = None
    compression: str = "gzip"
    workdir: str | None = None


@dataclass(frozen=True)
class Prepared:
    """A built image waiting to be published; files live until ``prepare`` ends."""

    squashfs: Path
    size: int
    digest: str
    report: check.CheckReport
    kernel: Path | None
    initrd: Path | None
    kernel_origin: str
    initrd_origin: str
    seconds: float


def validate(req: BuildRequest) -> source.Source:
    """Check every field before any work; returns the recognised SOURCE."""
    if not req.name or not req.name.strip() or any(ord(c) < 32 for c in req.name):
        raise InputError("image build", "--name", f"{req.name!r} is empty or has control "
                         "characters")
    if req.arch not in {a.value for a in Arch}:
        raise InputError("image build", "--arch", f"{req.arch!r} is not one of "
                         + ", ".join(a.value for a in Arch))
    if req.compression not in BUILD_COMPRESSIONS:
        raise InputError("image build", "--compression", f"{req.compression!r} is not one "
                         "of " + ", ".join(BUILD_COMPRESSIONS))
    for flag, value in (("--kernel", req.kernel), ("--initrd", req.initrd)):
        if value is not None and not Path(value).is_file():
            raise InputError(str(value), flag, "is not a readable regular file")
    if req.boot_parameters is not None and "\n" in req.boot_parameters:
        raise InputError("image build", "--boot-params", "must be one line")
    return source.detect(req.source)


def steps(req: BuildRequest, src: source.Source) -> list[str]:
    """What ``prepare`` does, in order, for ``--dry-run``."""
    out = []
    if src.kind is source.SourceKind.DIRECTORY:
        out.append(f"use directory {src.path} in place")
    elif src.kind is source.SourceKind.OCI_LAYOUT:
        out.append(f"apply the layers of the OCI image layout {src.path} ({req.arch}) into "
                   "a temporary directory, honouring whiteouts")
    else:
        out.append(f"unpack tar {src.path} into a temporary directory (ownership, modes, "
                   "xattrs, capabilities kept); if it is an OCI or docker-save archive, "
                   "apply its layers")
    out.append("check the tree against the image maturity model (image check)")
    out.append(f"mksquashfs <tree> <tmp>/rootfs -comp {req.compression} -mkfs-time 0 "
               "-all-time 0 (reproducible)")
    out.append(f"kernel: {req.kernel or 'from /boot of the tree, if there is one'}; "
               f"initrd: {req.initrd or 'from /boot of the tree, if there is one'}")
    out.append(f"build digest = sha256(rootfs, kernel, initrd, boot parameters, {req.arch})")
    return out


def _sha256(path: Path | None) -> str:
    if path is None:
        return "-"
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def build_digest(rootfs: Path, kernel: Path | None, initrd: Path | None,
                 boot_parameters: str | None, arch: str) -> str:
    parts = ["sbps-build-v1", arch, _sha256(rootfs), _sha256(kernel), _sha256(initrd),
             hashlib.sha256((boot_parameters or "").encode()).hexdigest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _take(view: DirView, found: str, dest: Path) -> Path | None:
    path = view.file(found) if found else None
    if path is None:
        return None
    shutil.copyfile(path, dest)
    return dest


@contextmanager
def prepare(req: BuildRequest, say: Say) -> Iterator[Prepared]:
    """Build the image; its files are removed when the context ends."""
    src = validate(req)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="sbps-image-", dir=req.workdir))
    try:
        with source.root_tree(src, arch=req.arch, workdir=work, progress=say) as tree:
            say("checking the tree")
            view = DirView(tree)
            view.label = str(src.path)
            given = check.Artifacts(kernel=req.kernel or "", initrd=req.initrd or "",
                                    initrd_file=Path(req.initrd) if req.initrd else None)
            report = check.run(view, given)
            kernel = Path(req.kernel) if req.kernel else _take(view, report.boot_kernel,
                                                               work / "kernel")
            initrd = Path(req.initrd) if req.initrd else _take(view, report.boot_initrd,
                                                               work / "initrd")
            say(f"mksquashfs -comp {req.compression}")
            image = make_squashfs(tree, work / "rootfs", compression=req.compression)
        say("computing the build digest")
        digest = build_digest(image, kernel, initrd, req.boot_parameters, req.arch)
        origin = {True: "given", False: "from the image"}
        yield Prepared(image, image.stat().st_size, digest, report, kernel, initrd,
                       origin[bool(req.kernel)] if kernel else "none",
                       origin[bool(req.initrd)] if initrd else "none",
                       time.monotonic() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
