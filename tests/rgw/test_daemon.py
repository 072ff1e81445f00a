"""The whole marshal on RGW: sbps-marshal with the tgt backend, its claims and its cache fed
by a real Ceph RADOS Gateway, read by a real iSCSI initiator (libiscsi).

label -> export -> read bit for bit -> unlabel -> retire run the tgt e2e bodies unchanged;
a rebuilt worker (state, cache and target lost) gets the same LUN ids back from the claims
in RGW, including an id that is not its hash's first choice.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from sbps.core import identity
from sbps.sources.claims import ClaimRegistry, Settings, first_candidate
from sbps.sources.s3 import S3
from tests.e2e.test_daemon_tgt import (  # noqa: F401 (collected by pytest)
    test_a_multipart_upload_reads_back_identical,
    test_a_node_reads_the_labelled_image_bit_for_bit,
    test_unlabel_keeps_the_lun_while_reads_continue,
    tgt_worker,
)
from tests.e2e.tgt_client import exported, read_back, serial_of, sha256_file, shut_down
from tests.fixtures.images import UploadedImage
from tests.fixtures.marshal import Worker
from tests.fixtures.servers import IMSServer
from tests.fixtures.tgt import Tgtd, start_tgtd, stop_tgtd


def test_a_rebuilt_worker_gets_its_ids_from_the_claims_in_rgw(
        tgtd: Tgtd, make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., UploadedImage], sbps_s3: S3, s3_bucket: str,
        tmp_path: Path) -> None:
    ups = [upload_ims_image(f"img{i}", label=True) for i in range(2)]
    # Another worker already holds the id img1 hashes to, so img1's agreed id is another.
    ident1 = identity.rootfs(ups[1].rootfs_url, ups[1].rootfs_etag)
    taken = first_candidate(ident1.digest, 1, 255)
    other = ClaimRegistry(sbps_s3, s3_bucket, "ncn-w002", Settings(), None)
    squatter = identity.rootfs("s3://boot-images/other/rootfs", "0" * 32)
    assert other.claim(squatter, preferred=taken).lun_id == taken

    w = tgt_worker(make_worker, ims_server, tgtd)
    w.start()
    before = {serial_of(up): exported(w, up) for up in ups}
    assert before[serial_of(ups[1])] != taken
    assert w.stop() == 0

    # The node is rebuilt: tgtd restarted empty, state and cache directories lost.
    shut_down(tgtd)
    for sub in ("state", "cache"):
        shutil.rmtree(w.root / sub)
        (w.root / sub).mkdir()
    restarted, _ = start_tgtd(tmp_path / "tgtd-rebuilt.log", control=tgtd.control_port,
                              port=tgtd.port)
    try:
        w.start()
        after = {serial_of(up): exported(w, up) for up in ups}
        assert after == before
        digest, _, _ = read_back(w, after[serial_of(ups[1])], tmp_path, "rebuilt")
        assert digest == sha256_file(ups[1].path)
        assert w.stop() == 0
    finally:
        stop_tgtd(restarted, tgtd.control_port)
