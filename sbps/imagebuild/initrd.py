"""Does an initrd carry the dracut handler of ``root=sbps-s3``? Answered without booting.

Owns looking for the protocol name inside an initrd file: as is (an uncompressed cpio),
then inside each compressed stream found in it (gzip, xz, zstd, bzip2; an early
microcode cpio often comes first). Answers True, False, or None when no stream could be
decompressed (an unsupported compression: the caller says "not verified"). Blocking;
reads only. Must not decide what an image needs.
"""

from __future__ import annotations

import bz2
import lzma
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
_LIMIT = 4 << 30  # decompressed bytes looked at per stream
_MAGICS = {b"\x1f\x8b\x08": "gzip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd",
           b"BZh9": "bzip2"}


def _inflate(data: bytes, start: int, kind: str) -> Iterator[bytes]:
    if kind == "zstd":
        exe = shutil.which("zstd")
        if exe is None:
            return
        proc = subprocess.run([exe, "-dc"], input=data[start:], capture_output=True,
                              check=False)
        if proc.stdout:
            yield proc.stdout
        return
    dec: Any
    if kind == "gzip":
        dec = zlib.decompressobj(31)
    elif kind == "xz":
        dec = lzma.LZMADecompressor()
    else:
        dec = bz2.BZ2Decompressor()
    total = 0
    for pos in range(start, len(data), _CHUNK):
        try:
            out = dec.decompress(data[pos:pos + _CHUNK])
        except (zlib.error, lzma.LZMAError, OSError, EOFError):
            return
        total += len(out)
        if out:
            yield out
        if total > _LIMIT or getattr(dec, "eof", False):
            return


def mentions(path: Path, needle: bytes) -> bool | None:
    """True if ``needle`` is in the initrd, False if not, None if it could not be read."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if needle in data:
        return True
    decoded = data.startswith(b"070701") or data.startswith(b"070702")
    for magic, kind in _MAGICS.items():
        start = data.find(magic)
        tries = 0
        while start >= 0 and tries < 4:
            tail = b""
            produced = False
            for chunk in _inflate(data, start, kind):
                produced = True
                if needle in tail + chunk:
                    return True
                tail = chunk[-len(needle):]
            decoded = decoded or produced
            if produced:
                break
            start = data.find(magic, start + 1)
            tries += 1
    return False if decoded else None
