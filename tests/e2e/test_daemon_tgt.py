"""The whole marshal as a subprocess driving a real tgtd, checked by a real iSCSI initiator.

moto S3, the dev IMS server, tgtd on 127.0.0.1 and ``sbps-marshal`` with a config file; the
client is libiscsi (``tests.fixtures.iscsi``, helpers in ``tgt_client``), on the loopback
portal only, every call bounded by a timeout. The target is also read straight from tgtd with
``tgtadm``, never through the daemon. Images are real squashfs files uploaded the way IMS
lays them out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sbps.core import identity
from sbps.imagebuild.upload import upload_image
from sbps.sources.s3 import S3
from tests.e2e.tgt_client import (
    CALL_TIMEOUT,
    client_luns,
    exported,
    node_read,
    read_back,
    reading,
    recording_tgtadm,
    s3_sha256,
    serial_of,
    session,
    sha256_file,
    shut_down,
    tgt_lun_of,
    unpack_marker,
)
from tests.fixtures.images import PROJECT_LABEL, BuiltImage, UploadedImage
from tests.fixtures.iscsi import CHECK_CONDITION, DATA_PROTECT
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer
from tests.fixtures.tgt import Tgtd, start_tgtd, stop_tgtd
from tests.fixtures.unit_confine import setpriv_argv


def tgt_worker(make_worker: Callable[..., Worker], ims: IMSServer, tgtd: Tgtd,
               **overrides: dict[str, Any]) -> Worker:
    return make_worker("ncn-w001", ims, backend="tgt", tgtd=tgtd, **overrides)


def test_a_node_reads_the_labelled_image_bit_for_bit(
        tgtd: Tgtd, make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., UploadedImage], s3_client: Any,
        tmp_path: Path) -> None:
    up = upload_ims_image("compute", label=True)
    upload_ims_image("unlabelled", label=False)
    w = tgt_worker(make_worker, ims_server, tgtd)
    w.start()
    lun = exported(w, up)

    # 1. The client finds the image by the serial derived from its identity.
    ident = identity.rootfs(up.rootfs_url, up.rootfs_etag)
    assert client_luns(w) == {lun: ident.serial}
    with session(w, lun) as s:
        assert s.call("inquiry") == ("LIO-ORG", ident.product_id)
        # 4. Writes are refused, even of the bytes already there.
        refused = s.call("write_probe")
        assert (refused.status, refused.key, refused.ascq) == (CHECK_CONDITION, DATA_PROTECT,
                                                               0x2700)

    # 2. Every byte read equals the uploaded object.
    digest, nbytes, copy = read_back(w, lun, tmp_path, "compute")
    assert nbytes == up.rootfs_size
    assert digest == s3_sha256(s3_client, up) == sha256_file(up.path)
    # 3. The bytes read are the squashfs, with the known file inside.
    assert unpack_marker(copy, tmp_path) == up.marker
    assert w.stop() == 0
    # A clean stop leaves the LUN for the nodes still booted from it.
    assert tgt_lun_of(w, ident.serial) == lun


def test_a_multipart_upload_reads_back_identical(
        tgtd: Tgtd, make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., UploadedImage], tmp_path: Path) -> None:
    up = upload_ims_image("multipart", label=True, multipart=True)
    assert up.rootfs_parts >= 2 and up.rootfs_etag.endswith(f"-{up.rootfs_parts}")
    w = tgt_worker(make_worker, ims_server, tgtd)
    w.start()
    lun = exported(w, up)
    assert client_luns(w) == {lun: serial_of(up)}
    digest, nbytes, copy = read_back(w, lun, tmp_path, "multipart")
    assert (digest, nbytes) == (sha256_file(up.path), up.rootfs_size)
    assert unpack_marker(copy, tmp_path) == up.marker
    assert w.stop() == 0


def test_new_content_is_a_new_lun_and_the_old_one_serves_until_idle(
        tgtd: Tgtd, make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., UploadedImage],
        squashfs_image: Callable[..., BuiltImage], sbps_s3: S3, s3_bucket: str,
        tmp_path: Path) -> None:
    old = upload_ims_image("compute", label=True)
    w = tgt_worker(make_worker, ims_server, tgtd)
    w.start()
    old_lun = exported(w, old)
    old_serial = serial_of(old)

    with reading(w, old_lun) as reader:
        # The image is rebuilt and uploaded again into the same IMS image's S3 path, then
        # its link is updated: same rootfs URL, new etag, so a new identity.
        rebuilt = squashfs_image("compute-v2")
        result = upload_image(sbps_s3, s3_bucket, old.ims_id, rebuilt.path,
                              boot_parameters="console=ttyS0")
        assert str(result.rootfs.url) == old.rootfs_url
        assert result.rootfs.etag != old.rootfs_etag
        ims_server.json("PATCH", f"/v3/images/{old.ims_id}", {"link": {
            "path": str(result.manifest_url), "etag": result.manifest_etag, "type": "s3"}})
        new_serial = identity.rootfs(str(result.rootfs.url), result.rootfs.etag).serial
        assert new_serial != old_serial

        new_lun = wait_until("the new content's LUN", lambda: tgt_lun_of(w, new_serial),
                             worker=w, timeout=120)
        assert new_lun != old_lun
        assert client_luns(w) == {old_lun: old_serial, new_lun: new_serial}
        digest, _, copy = read_back(w, new_lun, tmp_path, "v2")
        assert digest == sha256_file(rebuilt.path)
        assert unpack_marker(copy, tmp_path) == rebuilt.marker
        # Booted nodes keep reading the old content well past the grace.
        threading.Event().wait(3 * 3)
        assert tgt_lun_of(w, old_serial) == old_lun, w.log()[-3000:]
        digest, _, _ = read_back(w, old_lun, tmp_path, "v1")
        assert digest == sha256_file(old.path)
        assert reader.errors == [] and reader.reads > 0
    wait_until("the idle old LUN to be retired", lambda: tgt_lun_of(w, old_serial) is None,
               worker=w, timeout=60)
    assert tgt_lun_of(w, new_serial) == new_lun
    assert client_luns(w) == {new_lun: new_serial}
    assert w.stop() == 0


def test_unlabel_keeps_the_lun_while_reads_continue(
        tgtd: Tgtd, make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., UploadedImage]) -> None:
    up = upload_ims_image("compute", label=True)
    # Another labelled image keeps the catalog from coming back empty (which the daemon
    # treats as an outage for a few passes), so the unlabel counts at once.
    other = upload_ims_image("other", label=True)
    w = tgt_worker(make_worker, ims_server, tgtd, reconcile={"retire_grace": "3s"})
    w.start()
    lun, other_lun = exported(w, up), exported(w, other)
    ident = identity.rootfs(up.rootfs_url, up.rootfs_etag)
    with reading(w, lun) as reader:
        ims_server.remove_label(up.ims_id, PROJECT_LABEL)
        wait_until("the image to be retiring",
                   lambda: f"image {ident.name}: retiring" in w.log(), worker=w)
        # Reads continue for three times the grace: the LUN must stay and keep answering.
        threading.Event().wait(3 * 3)
        assert tgt_lun_of(w, ident.serial) == lun, w.log()[-3000:]
        assert reader.errors == [], reader.errors
        before = reader.reads
        wait_until("more reads", lambda: reader.reads > before + 3, timeout=CALL_TIMEOUT)
    assert reader.errors == [], reader.errors
    wait_until("the idle LUN to be retired", lambda: tgt_lun_of(w, ident.serial) is None,
               worker=w, timeout=60)
    assert client_luns(w) == {other_lun: serial_of(other)}
    assert w.stop() == 0


def test_a_second_image_does_not_move_the_first(
        tgtd: Tgtd, make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., UploadedImage]) -> None:
    first = upload_ims_image("first", label=True)
    second = upload_ims_image("second", label=False)
    w = tgt_worker(make_worker, ims_server, tgtd)
    w.start()
    first_lun = exported(w, first)
    with session(w, first_lun) as booted:
        assert booted.call("serial") == serial_of(first)
        ims_server.set_label(second.ims_id, PROJECT_LABEL)
        second_lun = exported(w, second)
        assert second_lun != first_lun
        assert client_luns(w) == {first_lun: serial_of(first), second_lun: serial_of(second)}
        # The node that booted before the change still reads its image at the same LUN.
        assert booted.call("serial") == serial_of(first)
        assert node_read(booted, 0, 1, 512)[:4] == b"hsqs"
    w.kill()
    # Restarted over a converged target (through a tgtadm that records each call), the
    # worker keeps both ids and writes nothing.
    calls = w.root / "tgtadm-calls"
    w.settings["target"]["tgtadm"] = str(recording_tgtadm(w.root / "tgtadm", calls))
    w.start()
    start = len(w.log())
    wait_until("two passes after restart", lambda: "pass 2 finished" in w.log()[start:],
               worker=w, timeout=60)
    assert tgt_lun_of(w, serial_of(first)) == first_lun
    assert tgt_lun_of(w, serial_of(second)) == second_lun
    ops = [line.split()[line.split().index("--op") + 1] for line in
           calls.read_text().splitlines()]
    assert ops and set(ops) <= {"show", "stat"}, ops
    assert w.stop() == 0


def test_a_restarted_tgtd_is_rebuilt_with_the_same_ids(
        tgtd: Tgtd, make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., UploadedImage],
        tmp_path: Path) -> None:
    """tgtd keeps no configuration: after an operator restarts it, the running worker
    rebuilds its target from the verified cache, at the same LUN ids, on its own."""
    ups = [upload_ims_image(f"img{i}", label=True) for i in range(2)]
    w = tgt_worker(make_worker, ims_server, tgtd)
    w.start()
    before = {serial_of(up): exported(w, up) for up in ups}
    # The operator's clean stop (tgtd ignores SIGTERM); the fixture still reaps the process.
    start = len(w.log())
    shut_down(tgtd)
    # A pass fails while tgtd is away; the marshal carries on.
    wait_until("a pass to fail on the missing tgtd",
               lambda: "reading or changing the target failed" in w.log()[start:], worker=w)
    assert w.proc is not None and w.proc.poll() is None
    restarted, _ = start_tgtd(tmp_path / "tgtd-restarted.log", control=tgtd.control_port,
                              port=tgtd.port)
    try:
        for up in ups:
            assert exported(w, up) == before[serial_of(up)]
        assert client_luns(w) == {lun: serial for serial, lun in before.items()}
        lun = before[serial_of(ups[0])]
        digest, _, _ = read_back(w, lun, tmp_path, "after-restart")
        assert digest == sha256_file(ups[0].path)
        assert w.proc.poll() is None, "a tgtd restart must not stop the marshal"
        assert w.stop() == 0
    finally:
        stop_tgtd(restarted, tgtd.control_port)


def _lun_read_bytes(w: Worker, lun: int) -> float:
    """The LUN's bytes-read counter in a scrape (waits until the daemon lists the LUN)."""
    import urllib.request

    def scrape() -> float | None:
        url = (w.root / "state/http-url").read_text().strip()
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as r:
            text = r.read().decode()
        line = next((x for x in text.splitlines() if x.startswith(
            "sbps_lun_read_bytes_total{") and f'lun="{lun}"' in x), None)
        return None if line is None else float(line.split()[-1])

    value: float = wait_until(f"LUN {lun} in the metrics", lambda: (lambda v: (v,) if v
                              is not None else None)(scrape()), worker=w)[0]
    return value


def test_metrics_count_reads_of_sessions_that_already_logged_out(
        tgtd: Tgtd, make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., UploadedImage], tmp_path: Path) -> None:
    """tgt drops a session's counters at logout: a whole read in a session that ended before
    the scrape must still be counted (from the LUN's I/O threads), also after a restart of
    the marshal."""
    up = upload_ims_image("compute", label=True)
    w = tgt_worker(make_worker, ims_server, tgtd)
    w.start()
    lun = exported(w, up)
    wait_until("the API URL", lambda: (w.root / "state/http-url").exists(), worker=w)
    before = _lun_read_bytes(w, lun)
    _, nbytes, _ = read_back(w, lun, tmp_path, "first")  # logs in, reads, logs out
    assert _lun_read_bytes(w, lun) >= before + nbytes
    assert w.stop() == 0
    (w.root / "state/http-url").unlink()
    w.start()
    wait_until("the API URL", lambda: (w.root / "state/http-url").exists(), worker=w)
    wait_until("the export after the restart", lambda: tgt_lun_of(w, serial_of(up)) == lun,
               worker=w)
    before = _lun_read_bytes(w, lun)
    read_back(w, lun, tmp_path, "second")
    assert _lun_read_bytes(w, lun) >= before + nbytes


def test_the_tgt_drop_in_gives_what_the_read_counters_need(
        tgtd: Tgtd, make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., UploadedImage], tmp_path: Path) -> None:
    """Under the unit's capabilities alone tgtd's thread counters cannot be read (a warning
    says so once); with systemd/sbps-marshal-tgt.conf they can, and a short session counts."""
    up = upload_ims_image("compute", label=True)
    root = Path(__file__).resolve().parents[2] / "systemd"
    for dropins, counted in (((), False), ((root / "sbps-marshal-tgt.conf",), True)):
        w = tgt_worker(make_worker, ims_server, tgtd) if not dropins else make_worker(
            "ncn-w002", ims_server, backend="tgt", tgtd=tgtd)
        w.prefix = tuple(setpriv_argv(dropins=dropins))
        w.start()
        lun = exported(w, up)
        wait_until("the API URL", lambda w=w: (w.root / "state/http-url").exists(), worker=w)
        before = _lun_read_bytes(w, lun)
        _, nbytes, _ = read_back(w, lun, tmp_path, f"read-{counted}")
        after = _lun_read_bytes(w, lun)
        assert (after >= before + nbytes) is counted, (before, after)
        assert ("CAP_SYS_PTRACE" in w.log()) is not counted
        assert w.stop() == 0
