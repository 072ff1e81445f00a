"""Building squashfs images with mksquashfs, reproducibly and without losing attributes.

Owns the mksquashfs command line and its failures. Ownership, modes, xattrs and file
capabilities are preserved (no ``-all-root``, no ``-no-xattrs``): a boot image needs them.
Reproducibility comes from fixed times and mksquashfs's sorted directory order. The image
is written to a temporary name and renamed, so a half-built file never has the final name.
Blocking: async callers run it in an executor. Must not upload anything.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from sbps.core.errors import InputError, PermanentError

log = logging.getLogger(__name__)

COMPRESSIONS = ("gzip", "xz", "zstd", "lzo", "lz4")


class SquashfsError(PermanentError):
    """mksquashfs is missing or failed on a source tree. Names the source and the output."""

    code = "squashfs_failed"

    def __init__(self, source: Path, out: Path, reason: str) -> None:
        super().__init__(f"mksquashfs {source} -> {out}: {reason}")
        self.source = source
        self.out = out
        self.reason = reason


def mksquashfs_command(source_dir: Path, out: Path, *, compression: str,
                       reproducible: bool, exe: str = "mksquashfs") -> list[str]:
    cmd = [exe, str(source_dir), str(out), "-noappend", "-quiet", "-no-progress",
           "-comp", compression]
    if reproducible:
        # Fixed times only: ownership and xattrs (capabilities) must survive as they are.
        cmd += ["-mkfs-time", "0", "-all-time", "0"]
    return cmd


def make_squashfs(source_dir: Path, out: Path, *, compression: str = "gzip",
                  reproducible: bool = True) -> Path:
    """Build ``out`` from ``source_dir``; returns ``out``. Replaces an existing ``out``."""
    source_dir, out = Path(source_dir), Path(out)
    if compression not in COMPRESSIONS:
        raise InputError(str(source_dir), "compression",
                         f"{compression!r} is not one of {', '.join(COMPRESSIONS)}")
    if not source_dir.is_dir():
        raise InputError(str(source_dir), "source_dir", "is not a directory")
    if not out.parent.is_dir():
        raise InputError(str(out), "out", f"directory {out.parent} does not exist")
    exe = shutil.which("mksquashfs")
    if exe is None:
        raise SquashfsError(source_dir, out, "mksquashfs not found on PATH "
                            "(install squashfs-tools)")
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    cmd = mksquashfs_command(source_dir, tmp, compression=compression,
                             reproducible=reproducible, exe=exe)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=False)
    except OSError as exc:
        raise SquashfsError(source_dir, out, f"cannot run {exe}: {exc}") from exc
    if proc.returncode != 0:
        if tmp.is_file():
            tmp.unlink()
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SquashfsError(source_dir, out,
                            f"exit status {proc.returncode}: {' | '.join(detail)}")
    os.replace(tmp, out)
    log.info("built squashfs", extra={"source": str(source_dir), "image": str(out),
                                      "compression": compression,
                                      "size": out.stat().st_size})
    return out
