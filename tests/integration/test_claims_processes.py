"""Eight worker processes claim twelve identities in a sixteen-id range at the same moment.

Each process has its own S3 client and state directory, starts behind a barrier and claims
the identities in its own order, so ids collide and conditional writes race. They must end
with one agreed id per identity, one identity per id, and identical maps.
"""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path
from typing import Any

from sbps.config import load
from sbps.core.identity import from_key
from sbps.sources.claims import ClaimRegistry, Settings, journal_path
from sbps.sources.claims.codec import claim_from_bytes, index_from_bytes
from sbps.sources.s3 import S3, read_credentials
from tests.fixtures.servers import S3Server

WORKERS = 8
KEYS = [f"s3://boot-images/img{n}/rootfs|etag{n}" for n in range(12)]
# Generous bound against a hang only; the run itself takes a few seconds.
JOIN_TIMEOUT = 120.0


def _worker(endpoint: str, credentials: str, bucket: str, host: str, state: str,
            keys: list[str], barrier: Any, results: Any) -> None:
    try:
        cfg = load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": endpoint}).config.s3
        s3 = S3(cfg, read_credentials(credentials))
        reg = ClaimRegistry(s3, bucket, host, Settings(1, 16, 86400.0), journal_path(state))
        barrier.wait(JOIN_TIMEOUT)
        results.put((host, {k: reg.claim(from_key(k)).lun_id for k in keys}))
    except BaseException as exc:
        results.put((host, f"{type(exc).__name__}: {exc}"))


def test_eight_processes_agree_on_one_owner_per_id(
        s3_server: S3Server, s3_credential_file: Path, s3_bucket: str, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = []
    for n in range(WORKERS):
        keys = list(KEYS)
        random.Random(n).shuffle(keys)
        procs.append(ctx.Process(target=_worker, name=f"claims-w{n}", args=(
            s3_server.endpoint, str(s3_credential_file), s3_bucket, f"w{n}",
            str(tmp_path / f"w{n}"), keys, barrier, results)))
    try:
        for p in procs:
            p.start()
        got = dict(results.get(timeout=JOIN_TIMEOUT) for _ in procs)
    finally:
        for p in procs:
            p.join(JOIN_TIMEOUT)
            if p.is_alive():
                p.kill()
                p.join()
    errors = {h: r for h, r in got.items() if isinstance(r, str)}
    assert errors == {}
    maps = list(got.values())
    assert all(m == maps[0] for m in maps)
    assert sorted(maps[0]) == sorted(KEYS)
    assert len(set(maps[0].values())) == len(KEYS)

    s3 = S3(load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": s3_server.endpoint}).config.s3,
            read_credentials(str(s3_credential_file)))
    hosts = {f"w{n}" for n in range(WORKERS)}
    held: dict[str, int] = {}
    for info in s3.list(s3_bucket, ".sbps/luns/"):
        lun_id = int(info.url.key.rsplit("/", 1)[1])
        claim = claim_from_bytes(s3.get_bytes(info.url)[0], info.url.key, lun_id)
        if claim.holders:
            assert claim.identity_key not in held  # one held claim per identity
            assert claim.holders == hosts
            held[claim.identity_key] = lun_id
        else:
            assert claim.released_at == 0.0  # only abandoned, never-exported slots
    assert held == maps[0]
    for key, lun_id in maps[0].items():
        digest = from_key(key).digest
        url = next(s3.list(s3_bucket, f".sbps/keys/{digest}")).url
        assert index_from_bytes(s3.get_bytes(url)[0], url.key, digest).lun_id == lun_id
