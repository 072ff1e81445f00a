"""Benchmark of the stager against a moto S3 server on loopback (not a test).

Measures, in one run: staging throughput with verification against boto3 ``download_file``
of the same 256 MiB object (ratio; goal >= 1.0), and the peak RSS of a process that does
nothing but stage a 1 GiB object (goal < 100 MB). Run: ``python perf/bench_stage.py``.
Every process started is stopped by its pid; every file lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from _common import Measurement, Result, add_json_arg, emit, median_spread  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config as BotoConfig  # noqa: E402

from sbps.config import StageConfig, load  # noqa: E402
from sbps.core import identity  # noqa: E402
from sbps.core.model import DesiredImage, ImageKind, ObjectInfo, S3Url  # noqa: E402
from sbps.sources.s3 import S3, Credentials  # noqa: E402
from sbps.sources.stager import Stager  # noqa: E402

MIB = 2**20
KEY, SECRET = "bench-key", "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                        config=BotoConfig(s3={"addressing_style": "path"},
                                          max_pool_connections=16))


def wrapper(endpoint: str) -> S3:
    cfg = load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": endpoint}).config.s3
    return S3(cfg, Credentials(KEY, SECRET))


def upload(c: Any, bucket: str, key: str, size: int) -> tuple[str, int]:
    """A random object uploaded as IMS does (multipart, 8 MiB parts), streamed from a file."""
    with tempfile.NamedTemporaryFile() as fh:
        block = os.urandom(MIB)
        for _ in range(size // MIB):
            fh.write(block[:-8] + os.urandom(8))
        fh.flush()
        c.upload_file(fh.name, bucket, key)
    head = c.head_object(Bucket=bucket, Key=key)
    return str(head["ETag"]).strip('"'), int(head["ContentLength"])


def desired(bucket: str, key: str, etag: str, size: int) -> DesiredImage:
    url = S3Url(bucket, key)
    return DesiredImage(identity.rootfs(url, etag), ImageKind.ROOTFS,
                        ObjectInfo(url, etag, size), name=key)


async def stage_once(endpoint: str, cache: str, img: DesiredImage) -> float:
    cfg = dataclasses.replace(StageConfig(), cache_dir=cache)
    stager = Stager(cfg, wrapper(endpoint))
    started = time.perf_counter()
    try:
        await stager.stage(img)
    finally:
        await stager.aclose()
    return time.perf_counter() - started


def child(args: argparse.Namespace) -> None:
    """Stage one object and print this process's peak RSS (VmHWM)."""
    img = desired(args.bucket, args.key, args.etag, args.size)
    elapsed = asyncio.run(stage_once(args.endpoint, args.cache, img))
    hwm = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM:"))
    print(f"{elapsed:.3f} {hwm}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("endpoint", "cache", "bucket", "key", "etag"):
        parser.add_argument(f"--{name}", default="")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--throughput-mib", type=int, default=256)
    parser.add_argument("--rss-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    add_json_arg(parser)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="sbps-bench-"))
    moto = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        c = client(endpoint)
        c.create_bucket(Bucket="bench")

        size = args.throughput_mib * MIB
        etag, size = upload(c, "bench", "tp/rootfs", size)
        img = desired("bench", "tp/rootfs", etag, size)
        boto_times, stage_times = [], []
        for n in range(args.rounds):
            target = work / f"boto-{n}"
            started = time.perf_counter()
            c.download_file("bench", "tp/rootfs", str(target), Config=TransferConfig())
            boto_times.append(time.perf_counter() - started)
            target.unlink()
            cache = work / f"cache-{n}"
            stage_times.append(asyncio.run(stage_once(endpoint, str(cache), img)))
            shutil.rmtree(cache, ignore_errors=True)
        boto_best, stage_best = min(boto_times), min(stage_times)
        print(f"object: {size // MIB} MiB, multipart ETag {etag}")
        print(f"boto3 download_file (no verification): best {boto_best:.2f} s "
              f"= {size / MIB / boto_best:.0f} MiB/s  (runs: "
              f"{', '.join(f'{t:.2f}' for t in boto_times)})")
        print(f"sbps stager (ranged GETs + verification): best {stage_best:.2f} s "
              f"= {size / MIB / stage_best:.0f} MiB/s  (runs: "
              f"{', '.join(f'{t:.2f}' for t in stage_times)})")
        print(f"throughput ratio stager/boto3: {boto_best / stage_best:.2f} (goal >= 1.0)")
        c.delete_object(Bucket="bench", Key="tp/rootfs")

        etag, size = upload(c, "bench", "rss/rootfs", args.rss_mib * MIB)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", "--endpoint", endpoint, "--cache",
             str(work / "rss-cache"), "--bucket", "bench", "--key", "rss/rootfs",
             "--etag", etag, "--size", str(size)], check=True, capture_output=True, text=True)
        elapsed, hwm_kib = proc.stdout.split()
        # VmHWM of the child's own address space. RUSAGE_CHILDREN's ru_maxrss would also
        # count this (large) parent's pages held by the child between fork and exec.
        print(f"staging {size // MIB} MiB in a child process: {float(elapsed):.2f} s, "
              f"peak RSS {int(hwm_kib) / 1024:.1f} MiB = {int(hwm_kib) * 1024 / 1e6:.1f} MB "
              "(VmHWM; goal < 100 MB)")
        if args.json:
            result = Result("stage", "Staging with verification vs boto3 download_file")
            rate = [args.throughput_mib / t for t in stage_times]
            med, spread = median_spread(rate)
            result.add(Measurement(
                "staging throughput", f"{args.throughput_mib} MiB object, ranged GETs + "
                "ETag/MD5 verification, best of the rounds", round(args.throughput_mib /
                                                                   stage_best, 1), "MiB/s",
                [round(x, 1) for x in rate], f"median {med:.0f} {spread}",
                "boto3 download_file (no verification)",
                round(args.throughput_mib / boto_best, 1), "MiB/s", True,
                round(boto_best / stage_best, 2), "(stager / boto3; higher is better)",
                ">= 1.0x", boto_best / stage_best >= 1.0))
            mb = int(hwm_kib) * 1024 / 1e6
            result.add(Measurement(
                "staging RSS", f"peak RSS (VmHWM) of a process staging {size // MIB} MiB",
                round(mb, 1), "MB", [], f"({float(elapsed):.1f} s)", goal="< 100 MB",
                met=mb < 100))
            emit(result, args.json)
    finally:
        moto.terminate()
        try:
            moto.wait(10)
        except subprocess.TimeoutExpired:
            moto.kill()
            moto.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
