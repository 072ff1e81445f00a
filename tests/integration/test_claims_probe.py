"""The marshal's proof that the claim bucket honours conditional writes (sbps.sources.claims.probe),
against a real S3 server and the same server behind a proxy that strips If-None-Match and
If-Match from PUTs (a store that ignores them). tests/rgw runs these bodies on Ceph RGW.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sbps.config import load
from sbps.core.identity import from_key
from sbps.publish.metrics import SbpsCollector
from sbps.reconcile.status import Status
from sbps.sources.claims import ClaimRegistry, Settings, journal_path
from sbps.sources.claims.probe import StoreCheck, StoreUnsafe, Verdict, probe
from sbps.sources.s3 import S3, read_credentials
from tests.fixtures.proxy import Fault, FaultProxy
from tests.fixtures.servers import S3Server

CONDITIONAL = ("If-None-Match", "If-Match")
IDENT = [from_key(f"s3://boot-images/img{n}/rootfs|etag{n}") for n in range(2)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_s3(endpoint: str, credential_file: Path) -> S3:
    cfg = load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": endpoint}).config.s3
    return S3(cfg, read_credentials(str(credential_file)))


@pytest.fixture
def proxy(fault_proxy: Callable[..., FaultProxy], s3_server: S3Server) -> FaultProxy:
    return fault_proxy(s3_server.endpoint,
                       resign=(s3_server.access_key, s3_server.secret_key, "us-east-1"))


def strip_conditions(proxy: FaultProxy) -> None:
    proxy.add(Fault(method="PUT", count=10_000, strip_request_headers=CONDITIONAL))


def objects(s3: S3, bucket: str, prefix: str) -> list[str]:
    return sorted(i.url.key for i in s3.list(bucket, prefix))


def test_a_conforming_store_passes_and_the_probe_leaves_nothing(
        proxy: FaultProxy, s3_credential_file: Path, s3_bucket: str) -> None:
    s3 = make_s3(proxy.endpoint, s3_credential_file)
    assert probe(s3, s3_bucket, ".sbps", "w1") == ""
    assert objects(s3, s3_bucket, ".sbps/") == []
    # Both refusals went through the proxy: two 412 answers to PUTs.
    assert len(proxy.requests("PUT")) == 3


def test_a_store_that_ignores_conditions_is_refused_and_no_claim_is_written(
        proxy: FaultProxy, s3_credential_file: Path, s3_bucket: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    direct = make_s3(proxy.endpoint, s3_credential_file)
    # A claim made while the store behaved: this worker keeps serving it.
    held = ClaimRegistry(direct, s3_bucket, "w1", Settings(1, 16, 86400.0),
                         journal_path(tmp_path / "w1"),
                         store_check=StoreCheck(direct, s3_bucket, ".sbps", "w1"))
    kept = held.claim(IDENT[0])
    before = objects(direct, s3_bucket, ".sbps/")

    strip_conditions(proxy)
    clock = Clock()
    check = StoreCheck(direct, s3_bucket, ".sbps", "w2", recheck=600.0, clock=clock)
    reg = ClaimRegistry(direct, s3_bucket, "w2", Settings(1, 16, 86400.0),
                        journal_path(tmp_path / "w2"), store_check=check)
    with pytest.raises(StoreUnsafe) as err:
        reg.claim(IDENT[1])
    assert err.value.code == "s3_conditional_writes_ignored"
    assert "does not honour conditional writes" in str(err.value)
    assert check.state.verdict is Verdict.REFUSED
    assert "If-None-Match" in check.state.reason
    assert 'target.lun_allocation = "hash"' in check.state.reason
    refusals = [r for r in caplog.records if r.name == "sbps.sources.claims.probe"]
    assert len(refusals) == 1 and 'target.lun_allocation = "hash"' in refusals[0].getMessage()
    # Refused again without a new probe until the recheck interval has passed.
    puts = len(proxy.requests("PUT"))
    with pytest.raises(StoreUnsafe):
        reg.claim(IDENT[1])
    assert len(proxy.requests("PUT")) == puts
    assert objects(direct, s3_bucket, ".sbps/") == before  # no claim, no probe left over
    # The worker that claimed before keeps its id from its journal (no S3 write).
    assert held.claim(IDENT[0]) == kept

    proxy.clear_faults()
    clock.now += 601
    assert reg.claim(IDENT[1]).lun_id != kept.lun_id
    assert check.state.verdict is Verdict.OK


def test_the_probe_detects_each_ignored_condition(
        proxy: FaultProxy, s3_credential_file: Path, s3_bucket: str) -> None:
    s3 = make_s3(proxy.endpoint, s3_credential_file)
    proxy.add(Fault(method="PUT", count=10_000, strip_request_headers=("If-None-Match",)))
    assert "If-None-Match" in probe(s3, s3_bucket, ".sbps", "w1")
    proxy.clear_faults()
    proxy.add(Fault(method="PUT", count=10_000, strip_request_headers=("If-Match",)))
    assert "If-Match" in probe(s3, s3_bucket, ".sbps", "w1")
    assert objects(s3, s3_bucket, ".sbps/") == []


def test_the_verdict_is_a_metric(proxy: FaultProxy, s3_credential_file: Path,
                                 s3_bucket: str) -> None:
    s3 = make_s3(proxy.endpoint, s3_credential_file)
    check = StoreCheck(s3, s3_bucket, ".sbps", "w1")
    collector = SbpsCollector(lambda: Status(iqn="iqn.x", backend="tgt"), version="t",
                              store_check=lambda: check.state.verdict.value)

    def states() -> dict[str, float]:
        fam = next(m for m in collector.collect() if m.name == "sbps_s3_conditional_writes")
        return {s.labels["state"]: s.value for s in fam.samples}

    assert states() == {"ok": 0, "refused": 0, "unknown": 1}
    strip_conditions(proxy)
    with pytest.raises(StoreUnsafe):
        check.ensure()
    assert states() == {"ok": 0, "refused": 1, "unknown": 0}
