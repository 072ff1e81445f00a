"""What ``image check`` inspects: a local SOURCE or an IMS image, as a ``RootView``.

Owns resolving the argument: an existing path is a squashfs file (read with unsquashfs,
never mounted), or anything ``image build`` accepts (directory, tar, OCI layout or
archive, unpacked to a temporary tree); otherwise it must be an IMS image id, whose
rootfs (and initrd, to look inside it) are downloaded from S3 into a temporary directory
through the manifest the record links. Temporary files go when the context ends. Must not
decide what an image needs (``sbps.imagebuild.check``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sbps.config import Config
from sbps.core.errors import InputError
from sbps.core.model import ArtifactType, Problem, S3Url
from sbps.imagebuild import source
from sbps.imagebuild.check import Artifacts
from sbps.imagebuild.rootview import DirView, RootView, SquashfsView
from sbps.sources.catalog import ImsClient, make_auth
from sbps.sources.catalog.parse import parse_manifest
from sbps.sources.s3 import S3, read_credentials, translate

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_squashfs(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"hsqs"
    except OSError:
        return False


def _download(s3: S3, url: S3Url, dest: Path) -> Path:
    try:
        s3.client.download_file(url.bucket, url.key, str(dest))
    except Exception as exc:
        raise translate(exc, "get_object", url) from exc
    return dest


@asynccontextmanager
async def open_view(target: str, arch: str, *, cfg: Config | None = None
                    ) -> AsyncIterator[tuple[RootView, Artifacts]]:
    path = Path(target)
    loop = asyncio.get_running_loop()
    if path.exists():
        if path.is_file() and is_squashfs(path):
            view: RootView = await loop.run_in_executor(None, SquashfsView, path)
            try:
                yield view, Artifacts()
            finally:
                view.close()
            return
        src = source.detect(path)
        with source.root_tree(src, arch=arch) as tree:
            dview = DirView(tree)
            dview.label = str(path)
            yield dview, Artifacts()
        return
    if cfg is None or not _ID_RE.match(target):
        raise InputError(target, "SOURCE", "does not exist and is not an IMS image id")
    work = Path(tempfile.mkdtemp(prefix="sbps-check-ims-"))
    try:
        async with ImsClient(cfg.catalog, make_auth(cfg.catalog)) as ims:
            record = await ims.get_record(target)
        if record.manifest is None:
            raise InputError(f"IMS image {target}", "link", "missing: the image has no "
                             "manifest in S3")
        s3 = S3(cfg.s3, read_credentials(cfg.s3.credential_file))
        body, _ = await loop.run_in_executor(None, s3.get_bytes, record.manifest)
        manifest = parse_manifest(target, body)
        if isinstance(manifest, Problem):
            raise InputError(manifest.obj, manifest.field, manifest.reason)
        rootfs = manifest.first(ArtifactType.ROOTFS)
        if rootfs is None:
            raise InputError(str(record.manifest), "artifacts", "no rootfs artifact")
        image = await loop.run_in_executor(None, _download, s3, rootfs.url, work / "rootfs")
        kernel = manifest.first(ArtifactType.KERNEL)
        initrd = manifest.first(ArtifactType.INITRD)
        initrd_file = None
        if initrd is not None:
            initrd_file = await loop.run_in_executor(None, _download, s3, initrd.url,
                                                     work / "initrd")
        view = await loop.run_in_executor(None, SquashfsView, image)
        view.label = f"IMS image {target} ({rootfs.url})"
        try:
            yield view, Artifacts(kernel=str(kernel.url) if kernel else "",
                                  initrd=str(initrd.url) if initrd else "",
                                  initrd_file=initrd_file)
        finally:
            view.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
