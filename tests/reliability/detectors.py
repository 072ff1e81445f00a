"""Loss detectors: each compares what a worker exports with an independent truth.

- ``Truth``: size and MD5 of every image's rootfs as S3 serves it (read straight from the
  moto server, never through the daemon or its cache).
- ``lio_exports``/``tgt_exports``: what a worker exports, read from configfs or tgtd.
- ``corrupt_exports``: exported LUNs whose backing file differs from the S3 object, or whose
  serial names no known image, or whose file is not a final cache file.
- ``LunBook``: the LUN id each serial was first seen on; a later different id is a renumbering.
- ``lost``: images that should be exported and are not.
- ``partial_files``: download leftovers (``.partial``/``.progress``) or cache files without
  a verification record.
- ``claim_problems``: ``ClaimRegistry.verify`` (what ``sbpsctl luns verify`` runs) for the
  exported map.

Each has a negative control in ``test_controls.py``. Must not change what it inspects.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sbps.config import TargetConfig
from sbps.core import identity
from sbps.core.model import Identity
from sbps.sources.claims import ClaimRegistry, Settings, journal_path
from sbps.sources.s3 import S3


@dataclass(frozen=True)
class Export:
    lun: int
    serial: str
    name: str
    file: str


def file_md5(path: str) -> tuple[int, str]:
    h = hashlib.md5()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


@dataclass
class Truth:
    """serial -> (size, md5) of the rootfs object in S3, for every image a test uploaded."""

    s3_client: Any
    bucket: str
    known: dict[str, tuple[int, str]] = field(default_factory=dict)

    def add(self, up: Any) -> str:
        """Register an uploaded image (tests.fixtures.images.UploadedImage); its serial."""
        serial = identity.rootfs(up.rootfs_url, up.rootfs_etag).serial
        key = up.rootfs_url.split("/", 3)[3]
        body = self.s3_client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        self.known[serial] = (len(body), hashlib.md5(body).hexdigest())
        return serial


def lio_exports(luns: Mapping[int, Mapping[str, Any]]) -> list[Export]:
    """From ``Worker.luns()`` (read from the emulated configfs)."""
    return [Export(n, x["serial"], x["name"], x["file"]) for n, x in sorted(luns.items())]


def tgt_exports(tgtd: Any, iqn: str) -> list[Export]:
    """From tgtd itself (``tgtadm --op show``; tests.fixtures.tgt.Tgtd), controller LUN 0
    left out; the backing file is the cache file."""
    out = []
    for target in tgtd.tgtadm.show():
        if target.name != iqn:
            continue
        for lun in target.luns:
            if lun.index == 0:
                continue
            sn = lun.scsi_sn.strip()
            out.append(Export(lun.index, sn, sn[:15], lun.path))
    return out


def corrupt_exports(exports: Iterable[Export], truth: Truth, cache_dir: str) -> list[str]:
    bad = []
    cache = os.path.realpath(cache_dir)
    for e in exports:
        want = truth.known.get(e.serial)
        if want is None:
            bad.append(f"LUN {e.lun}: serial {e.serial} is no uploaded image")
            continue
        if os.path.dirname(os.path.realpath(e.file)) != cache:
            bad.append(f"LUN {e.lun}: {e.file} is not in the cache directory")
            continue
        try:
            got = file_md5(e.file)
        except OSError as exc:
            bad.append(f"LUN {e.lun}: {e.file}: {exc}")
            continue
        if got != want:
            bad.append(f"LUN {e.lun}: {e.file} has size/md5 {got}, S3 has {want}")
    return bad


@dataclass
class LunBook:
    """The first LUN id seen per serial; any other id later is a renumbering."""

    first: dict[str, int] = field(default_factory=dict)

    def check(self, exports: Iterable[Export]) -> list[str]:
        moved = []
        for e in exports:
            was = self.first.setdefault(e.serial, e.lun)
            if was != e.lun:
                moved.append(f"serial {e.serial}: LUN {was} -> {e.lun}")
        return moved


def lost(expected: Iterable[str], exports: Iterable[Export]) -> list[str]:
    have = {e.serial for e in exports}
    return sorted(s for s in expected if s not in have)


def partial_files(cache_dir: str | Path) -> list[str]:
    """Download leftovers, and final files without a verification record."""
    names = set(os.listdir(cache_dir))
    out = sorted(n for n in names if n.endswith((".partial", ".progress")))
    out += sorted(n for n in names if n.endswith(".squashfs")
                  and n.replace(".squashfs", ".record") not in names)
    return out


def claim_problems(s3: S3, bucket: str, hostname: str, state_dir: str | Path,
                   exports: Iterable[Export], pending: Iterable[Identity] = ()) -> list[str]:
    """``pending``: desired images that cannot be exported yet (a failed download); their
    claims are rightly held, keeping the id, so ``held_not_exported`` is expected for them."""
    registry = ClaimRegistry(s3, bucket, hostname, Settings.from_config(TargetConfig()),
                             journal_path(state_dir), persist=False)
    found = registry.verify({e.lun: e.name for e in exports})
    held = {f"LUN {c.lun_id}" for c in map(registry.lookup, pending) if c is not None}
    return [f"{p.obj}: {p.field}: {p.reason} [{p.code}]" for p in found
            if not (p.code == "held_not_exported" and p.obj in held)]
