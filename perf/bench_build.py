"""Benchmark of the local half of ``sbpsctl image build`` against plain mksquashfs (not a test).

Makes one root tree (many small text files, some larger compressible files and some
random data, like a root file system), then times, alternately, ``--rounds`` times each:
plain ``mksquashfs TREE OUT -noappend -comp gzip`` and ``sbps.imagebuild.pipeline.prepare`` on
the same directory (image check, reproducible mksquashfs, kernel/initrd lookup, build
digest). Reports the medians and their ratio (goal <= 1.1). A tar SOURCE is timed once
for information (it adds the unpacking). Run: ``python perf/bench_build.py [--mib 64] [--rounds 5]``.
Every file lives in a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sbps.imagebuild import pipeline  # noqa: E402

MIB = 2**20
WORDS = [f"word{i}" for i in range(5000)]


def make_tree(root: Path, mib: int) -> int:
    rng = random.Random(42)
    total = 0
    n = 0
    while total < mib * MIB:
        d = root / f"usr/share/pkg{n // 200}"
        d.mkdir(parents=True, exist_ok=True)
        kind = n % 20
        if kind == 0:
            data = rng.randbytes(rng.randint(64 << 10, 2 << 20))  # binaries: incompressible
        elif kind < 4:
            data = " ".join(rng.choices(WORDS, k=rng.randint(20_000, 200_000))).encode()
        else:
            data = " ".join(rng.choices(WORDS, k=rng.randint(50, 3000))).encode()
        (d / f"f{n}").write_bytes(data)
        total += len(data)
        n += 1
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/os-release").write_text("ID=debian\n")
    return n


def plain(tree: Path, out: Path) -> float:
    start = time.monotonic()
    subprocess.run(["mksquashfs", str(tree), str(out), "-noappend", "-comp", "gzip",
                    "-quiet", "-no-progress"], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def ours(source: Path, work: Path) -> float:
    start = time.monotonic()
    req = pipeline.BuildRequest(source=str(source), name="bench", workdir=str(work))
    with pipeline.prepare(req, lambda _: None):
        elapsed = time.monotonic() - start
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mib", type=int, default=64, help="tree size in MiB")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sbps-bench-build-"))
    try:
        tree = work / "tree"
        files = make_tree(tree, args.mib)
        print(f"tree: {files} files, {args.mib} MiB, {os.cpu_count()} CPUs")
        a, b = [], []
        for _ in range(args.rounds):
            a.append(plain(tree, work / "plain.squashfs"))
            b.append(ours(tree, work))
        size = (work / "plain.squashfs").stat().st_size
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"plain mksquashfs : median {ma:6.2f} s  runs {[round(x, 2) for x in a]}"
              f"  ({size / MIB:.0f} MiB image)")
        print(f"image build (dir): median {mb:6.2f} s  runs {[round(x, 2) for x in b]}")
        print(f"ratio: {mb / ma:.3f} (goal <= 1.1)")
        tarball = work / "tree.tar"
        subprocess.run(["tar", "--xattrs", "-C", str(tree), "-cf", str(tarball), "."],
                       check=True)
        print(f"image build (tar): {ours(tarball, work):6.2f} s (includes unpacking)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
