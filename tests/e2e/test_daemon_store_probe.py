"""The running marshal against a bucket that ignores conditional writes (a proxy strips
If-None-Match and If-Match in front of a real S3): it keeps serving what it exports, claims
nothing, and says why in /readyz, the metrics and one log line."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sbps.core import identity
from tests.fixtures.marshal import Worker, read_json_log, wait_until
from tests.fixtures.proxy import Fault, FaultProxy
from tests.fixtures.servers import IMSServer, S3Server
from tests.fixtures.web import get

CONDITIONAL = ("If-None-Match", "If-Match")


def _get(url: str) -> tuple[int, str]:
    status, body = get(url)
    return status, body.decode()


def test_a_bucket_that_ignores_conditions_keeps_exports_and_claims_nothing(
        make_worker: Callable[..., Worker], ims_server: IMSServer, s3_server: S3Server,
        upload_ims_image: Callable[..., Any], fault_proxy: Callable[[str], FaultProxy],
        s3_client: Any, s3_bucket: str) -> None:
    proxy = fault_proxy(s3_server.endpoint)
    first = upload_ims_image("first", label=True)
    w = make_worker("ncn-w001", ims_server, s3={"endpoint": proxy.endpoint})
    w.start()
    serial = identity.rootfs(first.rootfs_url, first.rootfs_etag).serial
    wait_until("the first export", lambda: any(x["serial"] == serial
                                               for x in w.luns().values()), worker=w)
    lun = next(n for n, x in w.luns().items() if x["serial"] == serial)
    assert w.stop() == 0

    def claims() -> list[str]:
        listing = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix=".sbps/luns/")
        return sorted(o["Key"] for o in listing.get("Contents", []))

    before = claims()
    proxy.add(Fault(method="PUT", count=100_000, strip_request_headers=CONDITIONAL))
    second = upload_ims_image("second", label=True)
    (w.root / "state/http-url").unlink()
    w.start()
    url = wait_until("the API URL", lambda: (w.root / "state/http-url").exists()
                     and (w.root / "state/http-url").read_text().strip(), worker=w)
    status, body = wait_until("/readyz to say why", lambda: (lambda r: r if "no LUN ids "
                              "can be claimed" in r[1] else None)(_get(f"{url}/readyz")),
                              worker=w)
    assert status == 503 and "conditional writes" in json.loads(body)["reasons"][-1]
    metrics = _get(f"{url}/metrics")[1]
    assert 'sbps_s3_conditional_writes{state="refused"} 1.0' in metrics
    # The export it had keeps serving at its id; the new image gets no id; nothing written.
    assert w.luns()[lun]["serial"] == serial
    new = identity.rootfs(second.rootfs_url, second.rootfs_etag).serial
    assert all(x["serial"] != new for x in w.luns().values())
    assert claims() == before
    # One line names the setting to change; the refused claims of later passes are short.
    lines = [r for r in read_json_log(w) if "target.lun_allocation" in r.get("msg", "")]
    assert len(lines) == 1 and lines[0]["level"] == "error"
    assert w.stop() == 0
