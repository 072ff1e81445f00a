"""Boot storm: N initiators read the same image at once from a tgtd on loopback.

Not a test: a measurement. It builds a squashfs of incompressible bytes (mksquashfs), puts
it in a scratch cache directory, starts a private tgtd on 127.0.0.1, exports the image with
the sbps tgt backend (plan + apply), logs N libiscsi initiators in (one process each), and
then has all of them READ16 the whole LUN at the same time. Every SHA-256 must equal the
file's. As a baseline it reads the cache file directly with N processes (same hashing,
same concurrency). It prints aggregate MB/s of both and their ratio, and cleans up after
itself (tgtd stopped, scratch directory removed).

    python perf/bench_bootstorm.py [--initiators 32] [--size-mb 64] [--chunk-blocks 512]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Measurement, Result, add_json_arg, emit

from sbps.core import identity
from sbps.core.model import DesiredImage, ImageKind, ObjectInfo, S3Url
from sbps.core.target_state import LunStats, Portal
from sbps.reconcile.plan import PlanInput, plan
from sbps.target.tgt.backend import TgtBackend
from tests.fixtures.iscsi import RemoteSession
from tests.fixtures.tgt import start_tgtd, stop_tgtd

MAX_INITIATORS = 64
IQN = "iqn.2023-06.csm.iscsi:bootstorm"
OPEN = (("generate_node_acls", "1"), ("demo_mode_write_protect", "1"),
        ("cache_dynamic_acls", "1"), ("authentication", "0"))


def build_image(work: Path, size_mb: int) -> Path:
    tree = work / "root"
    (tree / "var").mkdir(parents=True)
    with open(tree / "var/random.bin", "wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    out = work / "image.squashfs"
    subprocess.run(["mksquashfs", str(tree), str(out), "-noappend", "-quiet", "-no-progress",
                    "-comp", "gzip"], check=True, capture_output=True, timeout=600)
    shutil.rmtree(tree)
    return out


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def export(tgtd_port: int, backend: TgtBackend, cache: Path, image: Path) -> int:
    data_etag = hashlib.md5(image.read_bytes()).hexdigest()
    url = S3Url("boot-images", "bootstorm/rootfs")
    ident = identity.rootfs(url, data_etag)
    path = cache / ident.digest
    shutil.copyfile(image, path)
    path.chmod(0o444)
    img = DesiredImage(ident, ImageKind.ROOTFS, ObjectInfo(url, data_etag, path.stat().st_size),
                       "bootstorm")
    lun = 1
    p = plan(PlanInput(desired=(img,), target=backend.read(), cache_dir=str(cache),
                       staged={ident.digest: str(path)}, claims={ident.digest: lun},
                       portals=frozenset({Portal("127.0.0.1", tgtd_port)}), attributes=OPEN))
    for action in p.actions:
        backend.apply(action)
    return lun


def storm(portal: str, lun: int, n: int, chunk: int, timeout: float,
          backend: TgtBackend) -> tuple[float, list[str], LunStats]:
    sessions = []
    try:
        for i in range(n):
            sessions.append(RemoteSession(portal, IQN, lun, timeout=timeout,
                                          initiator=f"iqn.2024-01.test.sbps:node{i:03d}"))
        started = time.monotonic()
        for s in sessions:
            s.submit("read_all", chunk)
        digests = [s.result("read_all")[0] for s in sessions]
        elapsed = time.monotonic() - started
        # tgt drops a session's counters at logout: sample while logged in.
        return elapsed, digests, backend.stats()[lun]
    finally:
        for s in sessions:
            s.close()


def direct(path: str, n: int) -> tuple[float, list[str]]:
    with multiprocessing.get_context("spawn").Pool(n) as pool:
        pool.map(len, [""] * n)  # start every worker before the clock starts
        started = time.monotonic()
        digests = pool.map(sha256_file, [path] * n)
        return time.monotonic() - started, digests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--initiators", type=int, default=32)
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--chunk-blocks", type=int, default=512, help="blocks per READ16")
    ap.add_argument("--timeout", type=float, default=300, help="per initiator call")
    add_json_arg(ap)
    args = ap.parse_args()
    n = max(1, min(args.initiators, MAX_INITIATORS))
    with tempfile.TemporaryDirectory(prefix="sbps-bootstorm-") as scratch:
        work = Path(scratch)
        (work / "cache").mkdir()
        image = build_image(work, args.size_mb)
        proc, tgtd = start_tgtd(work / "tgtd.log")
        try:
            backend = TgtBackend(IQN, tgtd.tgtadm)
            lun = export(tgtd.port, backend, work / "cache", image)
            cache_file = next(p for p in (work / "cache").iterdir())
            size = cache_file.stat().st_size
            expected = sha256_file(str(cache_file))
            d_secs, d_digests = direct(str(cache_file), n)
            i_secs, i_digests, stats = storm(tgtd.portal, lun, n, args.chunk_blocks,
                                             args.timeout, backend)
        finally:
            stop_tgtd(proc, tgtd.control_port)
    ok = all(d == expected for d in i_digests + d_digests)
    mb = n * size / 1e6
    print(f"image: {size / 1e6:.1f} MB squashfs, {n} initiators, {args.chunk_blocks} "
          f"blocks per READ16, cpus {os.cpu_count()}")
    print(f"direct read of the cache file ({n} processes): {d_secs:.2f} s, "
          f"{mb / d_secs:.0f} MB/s aggregate")
    print(f"iSCSI boot storm via tgtd ({n} sessions):      {i_secs:.2f} s, "
          f"{mb / i_secs:.0f} MB/s aggregate, {mb / i_secs / n:.1f} MB/s per initiator")
    print(f"ratio iSCSI / direct: {d_secs / i_secs:.2f}")
    print(f"tgt counters for LUN {lun}: {stats.read_bytes / 1e6:.0f} MB read, "
          f"{stats.commands} commands")
    print(f"checksums: {'all equal' if ok else 'MISMATCH'} ({len(i_digests)} initiators)")
    if args.json:
        result = Result("bootstorm", f"Boot storm: {n} initiators through tgt vs direct read")
        result.add(Measurement(
            "aggregate read rate", f"{n} libiscsi sessions READ16 the whole {size / 1e6:.0f} MB "
            "LUN at once", round(mb / i_secs, 1), "MB/s", [], f"({i_secs:.2f} s)",
            f"direct read of the cache file ({n} processes)", round(mb / d_secs, 1), "MB/s",
            True, round(d_secs / i_secs, 3), "(iSCSI / direct; higher is better)",
            "all checksums equal", ok))
        result.notes.append(f"tgt counters: {stats.read_bytes / 1e6:.0f} MB read, "
                            f"{stats.commands} commands")
        emit(result, args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
