"""The stager against the real moto server, with faults through a loopback proxy."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sbps.config import StageConfig, load
from sbps.core import identity
from sbps.core.errors import InputError, VerificationError
from sbps.core.model import DesiredImage, ImageKind, ObjectInfo, S3Url
from sbps.sources.s3 import S3, read_credentials
from sbps.sources.stager import CacheFull, StageConflict, Stager
from tests.fixtures.proxy import Fault, FaultProxy
from tests.fixtures.servers import S3Server

MIB = 2**20


def make_s3(endpoint: str, credential_file: Path) -> S3:
    cfg = load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": endpoint,
                          "SBPS_MARSHAL_S3_TIMEOUT": "5"}).config.s3
    return S3(cfg, read_credentials(str(credential_file)))


def stage_cfg(cache_dir: Path, **kw: Any) -> StageConfig:
    kw.setdefault("part_size", MIB)
    return dataclasses.replace(StageConfig(), cache_dir=str(cache_dir), **kw)


def body_of(size: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    return (block * (size // len(block) + 1))[:size]


def put_single(client: Any, bucket: str, key: str, body: bytes) -> str:
    return str(client.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]).strip('"')


def put_multipart(client: Any, bucket: str, key: str, body: bytes, part: int = 5 * MIB) -> str:
    up = client.create_multipart_upload(Bucket=bucket, Key=key)
    parts = []
    for n, start in enumerate(range(0, len(body), part), 1):
        r = client.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n,
                               Body=body[start:start + part])
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    r = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                         MultipartUpload={"Parts": parts})
    # Ceph RGW 16.2 answers with an empty <ETag>: the object's own is read back.
    etag = r.get("ETag") or client.head_object(Bucket=bucket, Key=key)["ETag"]
    return str(etag).strip('"')


def image(bucket: str, key: str, etag: str, size: int, md5: str | None = None) -> DesiredImage:
    url = S3Url(bucket, key)
    return DesiredImage(identity.rootfs(url, etag), ImageKind.ROOTFS, ObjectInfo(url, etag, size),
                        name=key, md5=md5)


def cache_listing(cache_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(cache_dir)) for p in cache_dir.rglob("*"))


@pytest.fixture
def s3(s3_server: S3Server, s3_credential_file: Path) -> S3:
    return make_s3(s3_server.endpoint, s3_credential_file)


@pytest.fixture
def proxy(fault_proxy: Callable[[str], FaultProxy], s3_server: S3Server) -> FaultProxy:
    return fault_proxy(s3_server.endpoint)


@pytest.fixture
def proxied_s3(proxy: FaultProxy, s3_credential_file: Path) -> S3:
    return make_s3(proxy.endpoint, s3_credential_file)


async def test_single_part_object_is_verified(s3: S3, s3_client: Any, s3_bucket: str,
                                              cache_dir: Path) -> None:
    body = body_of(5 * MIB + 123)
    etag = put_single(s3_client, s3_bucket, "a/rootfs", body)
    img = image(s3_bucket, "a/rootfs", etag, len(body), hashlib.md5(body).hexdigest())
    stager = Stager(stage_cfg(cache_dir), s3)
    entry = await stager.stage(img)
    try:
        assert entry.path == str(cache_dir / f"{img.identity.digest}.squashfs")
        assert Path(entry.path).read_bytes() == body
        assert os.stat(entry.path).st_mode & 0o777 == 0o444
        assert (entry.size, entry.etag) == (len(body), etag)
        assert await stager.stage(img) == entry
        assert stager.entry(img.identity.digest) == entry
        status = stager.status()
        assert (status.downloads_ok, status.bytes_downloaded) == (1, len(body))
        assert cache_listing(cache_dir) == sorted(
            [f"{img.identity.digest}.squashfs", f"{img.identity.digest}.record"])
    finally:
        await stager.aclose()


@pytest.mark.parametrize("chunk", [3 * MIB, 12 * MIB])
async def test_multipart_object_is_verified_per_part(s3: S3, s3_client: Any, s3_bucket: str,
                                                     cache_dir: Path, chunk: int) -> None:
    body = body_of(17 * MIB + 5, seed=2)
    etag = put_multipart(s3_client, s3_bucket, "b/rootfs", body)
    assert etag.endswith("-4")
    img = image(s3_bucket, "b/rootfs", etag, len(body))
    # 3 MiB ranges split 5 MiB parts unevenly; 12 MiB ranges group two parts whole.
    stager = Stager(stage_cfg(cache_dir, part_size=chunk, part_concurrency=3), s3)
    try:
        entry = await stager.stage(img)
        assert Path(entry.path).read_bytes() == body
        # With the manifest's MD5 the whole-file hash is checked too.
        md5 = hashlib.md5(body).hexdigest()
        img2 = image(s3_bucket, "b/rootfs", etag, len(body), md5)
        assert (await stager.stage(img2)).path == entry.path
    finally:
        await stager.aclose()


async def test_wrong_md5_fails_and_leaves_nothing(s3: S3, s3_client: Any, s3_bucket: str,
                                                  cache_dir: Path) -> None:
    body = body_of(3 * MIB, seed=3)
    etag = put_single(s3_client, s3_bucket, "c/rootfs", body)
    stager = Stager(stage_cfg(cache_dir), s3)
    try:
        with pytest.raises(VerificationError) as err:
            await stager.stage(image(s3_bucket, "c/rootfs", etag, len(body), "0" * 32))
        assert err.value.code == "md5_mismatch"
        assert cache_listing(cache_dir) == []
        with pytest.raises(VerificationError) as err:
            await stager.stage(image(s3_bucket, "c/rootfs", "1" * 32, len(body)))
        assert err.value.code == "etag_mismatch"
        with pytest.raises(VerificationError) as err:
            await stager.stage(image(s3_bucket, "c/rootfs", etag, len(body) + 1))
        assert err.value.code == "size_mismatch"
        assert cache_listing(cache_dir) == []
        assert dict(stager.status().failures) == {
            "md5_mismatch": 1, "etag_mismatch": 1, "size_mismatch": 1}
    finally:
        await stager.aclose()


@pytest.mark.parametrize("multipart", [False, True])
async def test_content_not_matching_etag_fails(
        proxy: FaultProxy, proxied_s3: S3, s3_client: Any, s3_bucket: str, cache_dir: Path,
        multipart: bool) -> None:
    body = body_of(11 * MIB, seed=4)
    put = put_multipart if multipart else put_single
    etag = put(s3_client, s3_bucket, "d/rootfs", body)
    proxy.add(Fault(method="GET", corrupt=True))
    stager = Stager(stage_cfg(cache_dir, part_concurrency=1), proxied_s3)
    try:
        with pytest.raises(VerificationError) as err:
            await stager.stage(image(s3_bucket, "d/rootfs", etag, len(body)))
        assert err.value.code == "etag_mismatch"
        assert cache_listing(cache_dir) == []
    finally:
        await stager.aclose()


async def test_server_errors_and_resets_are_retried(
        proxy: FaultProxy, proxied_s3: S3, s3_client: Any, s3_bucket: str,
        cache_dir: Path) -> None:
    body = body_of(4 * MIB, seed=5)
    etag = put_single(s3_client, s3_bucket, "e/rootfs", body)
    # More 500s than botocore retries by itself, so the stager's own retry must act too.
    proxy.add(Fault(method="GET", status=500, count=4))
    proxy.add(Fault(method="GET", reset=True, count=2))
    proxy.add(Fault(method="GET", truncate=MIB + MIB // 2))
    stager = Stager(stage_cfg(cache_dir, part_size=2 * MIB, part_concurrency=1), proxied_s3)
    try:
        entry = await stager.stage(image(s3_bucket, "e/rootfs", etag, len(body)))
        assert Path(entry.path).read_bytes() == body
        assert stager.status().retries >= 1
        gets = proxy.requests("GET")
        # 2 ranges, and each fault consumed one GET.
        assert len(gets) == 2 + 4 + 2 + 1, [r.range for r in gets]
        # A body cut after 1.5 MiB resumes from what was received, not from 0.
        resumed = [r.range for r in gets if r.range.endswith(f"-{2 * MIB - 1}")
                   and not r.range.startswith("bytes=0-")]
        assert len(resumed) == 1 and 0 < int(resumed[0][6:].split("-")[0]) <= MIB + MIB // 2
    finally:
        await stager.aclose()


@pytest.mark.parametrize("policy", ["strict", "best-effort"])
async def test_unknown_multipart_layout(
        proxy: FaultProxy, proxied_s3: S3, s3_client: Any, s3_bucket: str, cache_dir: Path,
        policy: str) -> None:
    body = body_of(11 * MIB, seed=6)
    etag = put_multipart(s3_client, s3_bucket, "f/rootfs", body)
    # A gateway that does not report PartsCount: the layout cannot be learned.
    proxy.add(Fault(method="HEAD", count=10, strip_headers=("x-amz-mp-parts-count",)))
    stager = Stager(stage_cfg(cache_dir, verify=policy), proxied_s3)
    img = image(s3_bucket, "f/rootfs", etag, len(body))
    try:
        if policy == "strict":
            with pytest.raises(VerificationError) as err:
                await stager.stage(img)
            assert err.value.code == "unverifiable"
            assert proxy.counts()["GET"] == 0
            assert cache_listing(cache_dir) == []
            # The manifest's MD5 verifies it even without the layout.
            md5 = hashlib.md5(body).hexdigest()
            entry = await stager.stage(image(s3_bucket, "f/rootfs", etag, len(body), md5))
            assert stager.status().best_effort == 0
        else:
            entry = await stager.stage(img)
            assert stager.status().best_effort == 1
        assert Path(entry.path).read_bytes() == body
    finally:
        await stager.aclose()


async def test_unsafe_digests_are_rejected(s3: S3, s3_bucket: str, cache_dir: Path,
                                           tmp_path: Path) -> None:
    stager = Stager(stage_cfg(cache_dir), s3)
    try:
        for bad in ("../" * 5 + "etc/passwd", "A" * 56, "0" * 55, "/tmp/x", "0" * 56 + "\n"):
            with pytest.raises(InputError):
                stager.entry(bad)
            url = S3Url(s3_bucket, "g/rootfs")
            forged = DesiredImage(identity.Identity("key", bad), ImageKind.ROOTFS,
                                  ObjectInfo(url, "0" * 32, 1), name="forged")
            with pytest.raises(InputError):
                await stager.stage(forged)
        # A well-formed digest that is not the digest of the key is refused too.
        url = S3Url(s3_bucket, "g/rootfs")
        lie = DesiredImage(identity.Identity("key", identity.digest("other")), ImageKind.ROOTFS,
                           ObjectInfo(url, "0" * 32, 1), name="lie")
        with pytest.raises(InputError):
            await stager.stage(lie)
        assert cache_listing(cache_dir) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            p.name for p in tmp_path.iterdir() if p.name in ("cache", "ims.s3fs"))
    finally:
        await stager.aclose()


async def test_cache_full_never_evicts_what_is_in_use(s3: S3, s3_client: Any, s3_bucket: str,
                                                      cache_dir: Path) -> None:
    imgs = []
    for n in range(3):
        body = body_of(4 * MIB, seed=10 + n)
        etag = put_single(s3_client, s3_bucket, f"h{n}/rootfs", body)
        imgs.append(image(s3_bucket, f"h{n}/rootfs", etag, len(body)))
    a, b, c = (i.identity.digest for i in imgs)
    stager = Stager(stage_cfg(cache_dir, max_bytes=9 * MIB), s3)
    try:
        entry_a = await stager.stage(imgs[0])
        entry_b = await stager.stage(imgs[1], in_use={a})
        before = {p: p.stat() for p in cache_dir.iterdir()}
        with pytest.raises(CacheFull) as err:
            await stager.stage(imgs[2], in_use={a, b})
        assert err.value.code == "cache_full"
        assert f"needs {4 * MIB} bytes" in str(err.value) and "free" in str(err.value)
        assert {p: p.stat() for p in cache_dir.iterdir()} == before
        assert stager.entry(a) == entry_a and stager.entry(b) == entry_b
        # With only a in use, b (least recently used of the rest) makes room for c.
        await stager.stage(imgs[2], in_use={a})
        assert stager.entry(b) is None and not Path(entry_b.path).exists()
        assert stager.entry(a) == entry_a and stager.entry(c) is not None
        used, budget = stager.usage()
        assert (used, budget) == (8 * MIB + os.path.getsize(cache_dir / f"{a}.record")
                                  + os.path.getsize(cache_dir / f"{c}.record"), 9 * MIB)
        # Least recently used goes first when nothing is in use.
        stager.touch(a)
        assert stager.evict(set(), 2 * MIB) == [c]
    finally:
        await stager.aclose()


async def test_restart_check_and_rehash_quarantine_a_tampered_file(
        s3: S3, s3_client: Any, s3_bucket: str, cache_dir: Path) -> None:
    bodies = [body_of(3 * MIB, seed=20), body_of(11 * MIB, seed=21), body_of(2 * MIB, seed=22)]
    imgs = [image(s3_bucket, "i0/rootfs", put_single(s3_client, s3_bucket, "i0/rootfs",
                                                     bodies[0]), len(bodies[0])),
            image(s3_bucket, "i1/rootfs", put_multipart(s3_client, s3_bucket, "i1/rootfs",
                                                        bodies[1]), len(bodies[1])),
            image(s3_bucket, "i2/rootfs", put_single(s3_client, s3_bucket, "i2/rootfs",
                                                     bodies[2]), len(bodies[2]))]
    first = Stager(stage_cfg(cache_dir), s3)
    entries = [await first.stage(i) for i in imgs]
    await first.aclose()
    # Same size and mtime, different bytes: only a full re-hash can tell.
    for entry in entries[:2]:
        path = Path(entry.path)
        st = path.stat()
        path.chmod(0o644)
        with open(path, "r+b") as fh:
            fh.seek(entry.size // 2)
            fh.write(b"\0tampered\0")
        path.chmod(0o444)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    # A changed mtime is caught by the cheap check.
    os.utime(entries[2].path, ns=(0, 0))

    stager = Stager(stage_cfg(cache_dir), s3)
    try:
        problems = await stager.check_all()
        assert [(p.obj, p.code) for p in problems] == [(imgs[2].identity.digest, "changed")]
        assert stager.entry(imgs[2].identity.digest) is None
        assert stager.entry(imgs[0].identity.digest) is not None
        seen: list[str] = []
        found = await stager.rehash_all(rate=0, on_problem=lambda p: seen.append(p.obj))
        assert sorted((p.obj, p.code) for p in found) == sorted(
            [(imgs[0].identity.digest, "md5_mismatch"), (imgs[1].identity.digest,
                                                         "etag_mismatch")])
        assert sorted(seen) == sorted(p.obj for p in found)
        quarantined = sorted(p.name.split(".")[0] for p in (cache_dir / "quarantine").iterdir())
        assert quarantined == sorted(i.identity.digest for i in imgs)
        assert all(stager.entry(i.identity.digest) is None for i in imgs)
        assert stager.status().quarantined == 3
        # Staged again from S3, verified.
        for img, body in zip(imgs, bodies, strict=True):
            assert Path((await stager.stage(img)).path).read_bytes() == body
    finally:
        await stager.aclose()


async def test_rehash_is_cancellable(s3: S3, s3_client: Any, s3_bucket: str,
                                     cache_dir: Path) -> None:
    body = body_of(8 * MIB, seed=30)
    img = image(s3_bucket, "j/rootfs", put_single(s3_client, s3_bucket, "j/rootfs", body),
                len(body))
    stager = Stager(stage_cfg(cache_dir), s3)
    try:
        await stager.stage(img)
        # 1 MiB/s over 8 MiB: it is still running when cancelled.
        task = asyncio.create_task(stager.rehash_all(rate=MIB))
        while not stager.status().rehash_running:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not stager.status().rehash_running
        assert stager.entry(img.identity.digest) is not None
    finally:
        await stager.aclose()


_CHILD = """
import asyncio, dataclasses, sys
from sbps.core import identity
from sbps.config import StageConfig, load
from sbps.core.model import DesiredImage, ImageKind, ObjectInfo, S3Url
from sbps.sources.s3 import S3, read_credentials
from sbps.sources.stager import Stager

endpoint, creds, cache, bucket, key, etag, size = sys.argv[1:]
s3 = S3(load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": endpoint}).config.s3,
        read_credentials(creds))
cfg = dataclasses.replace(StageConfig(), cache_dir=cache, part_size=2**20,
                          part_concurrency=2, bandwidth=2 * 2**20)
url = S3Url(bucket, key)
img = DesiredImage(identity.rootfs(url, etag), ImageKind.ROOTFS,
                   ObjectInfo(url, etag, int(size)), name=key)
asyncio.run(Stager(cfg, s3).stage(img))
print("finished")
"""


@pytest.mark.parametrize("multipart", [False, True])
async def test_download_killed_resumes_from_completed_parts(
        proxy: FaultProxy, proxied_s3: S3, s3_client: Any, s3_bucket: str, cache_dir: Path,
        s3_credential_file: Path, multipart: bool) -> None:
    body = body_of(20 * MIB + 77, seed=40)
    put = put_multipart if multipart else put_single
    etag = put(s3_client, s3_bucket, "k/rootfs", body)
    img = image(s3_bucket, "k/rootfs", etag, len(body))
    digest = img.identity.digest
    progress = cache_dir / f".{digest}.progress"
    # Chunks are 1 MiB; parts 5 MiB; the child is held to 2 MiB/s so it is killed mid-way.
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, proxy.endpoint, str(s3_credential_file),
         str(cache_dir), s3_bucket, "k/rootfs", etag, str(len(body))],
        cwd=str(Path(__file__).parents[2]), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while _logged(progress, "chunk") < 8:
            assert child.poll() is None, child.communicate()
            await asyncio.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    done = _logged(progress, "chunk")
    assert 8 <= done < 21
    assert not (cache_dir / f"{digest}.squashfs").exists()
    proxy.reset_counts()

    stager = Stager(stage_cfg(cache_dir), proxied_s3)
    try:
        entry = await stager.stage(img)
        assert Path(entry.path).read_bytes() == body
        # Only the chunks not logged as complete were fetched again.
        assert len(proxy.requests("GET")) == 21 - done
        assert sorted(p.name for p in cache_dir.iterdir()) == sorted(
            [f"{digest}.squashfs", f"{digest}.record"])
    finally:
        await stager.aclose()


def _logged(progress: Path, kind: str) -> int:
    try:
        lines = progress.read_bytes().split(b"\n")
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines[1:] if line.startswith(b'{"' + kind.encode()))


async def test_pe_reupload_under_the_same_digest_waits_until_unexported(
        s3: S3, s3_client: Any, s3_bucket: str, cache_dir: Path) -> None:
    url = S3Url(s3_bucket, "PE/cpe.squashfs")
    old, new = body_of(2 * MIB, seed=50), body_of(2 * MIB, seed=51)
    stager = Stager(stage_cfg(cache_dir), s3)

    def pe_image(etag: str, size: int) -> DesiredImage:
        return DesiredImage(identity.pe(url, etag), ImageKind.PE, ObjectInfo(url, etag, size),
                            name="cpe")
    try:
        first = await stager.stage(pe_image(put_single(s3_client, s3_bucket, url.key, old),
                                            len(old)))
        img = pe_image(put_single(s3_client, s3_bucket, url.key, new), len(new))
        assert img.identity.digest == first.digest  # legacy PE identity: path only
        with pytest.raises(StageConflict):
            await stager.stage(img, in_use={first.digest})
        assert Path(first.path).read_bytes() == old
        second = await stager.stage(img)
        assert second.path == first.path and Path(second.path).read_bytes() == new
    finally:
        await stager.aclose()


async def test_keep_free_binds_with_one_line_and_a_status(
        s3: S3, s3_client: Any, s3_bucket: str, cache_dir: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """stage.keep_free = 0.9 on this machine's disk (far less than 90 % free): nothing is
    staged, the failure names stage.keep_free, the status says the budget binds, and one
    line is logged however many images wait; lowering the floor lets them through."""
    body = body_of(2 * MIB, seed=40)
    imgs = [image(s3_bucket, f"k{n}/rootfs", put_single(s3_client, s3_bucket, f"k{n}/rootfs",
                                                        body), len(body)) for n in range(2)]
    stager = Stager(stage_cfg(cache_dir, keep_free=0.9), s3)
    try:
        with caplog.at_level(logging.INFO, "sbps.sources.stager.service"):
            for img in imgs * 2:
                with pytest.raises(CacheFull, match="stage.keep_free") as err:
                    await stager.stage(img)
                assert err.value.code == "cache_full"
        assert stager.status().cache_full and 0 < stager.usage()[1] < 2 * MIB
        assert sum("budget reached" in r.getMessage() for r in caplog.records) == 1
        assert not any(p.name.endswith(".part") for p in cache_dir.iterdir())
        # negative control: the same stager logic with no floor stages them
        stager.cfg = stage_cfg(cache_dir, keep_free=0.0)
        await stager.stage(imgs[0])
        assert not stager.status().cache_full and stager.usage()[1] == 0
    finally:
        await stager.aclose()
