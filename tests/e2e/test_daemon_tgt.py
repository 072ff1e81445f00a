"""The whole marshal as a subprocess driving a real tgtd, checked by a real iSCSI initiator.

moto S3, the dev IMS server, tgtd on 127.0.0.1 and ``sbps-marshal`` with a config file; the
client is libiscsi (``tests.fixtures.iscsi``), on the loopback portal only, every call bounded
by a timeout. The target is also read straight from tgtd with ``tgtadm``, never through the
daemon. Images are real squashfs files uploaded the way IMS lays them out.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sbps import identity
from sbps.build.upload import upload_image
from sbps.s3 import S3
from tests.fixtures.images import MARKER, PROJECT_LABEL, BuiltImage, UploadedImage
from tests.fixtures.iscsi import (
    CHECK_CONDITION,
    DATA_PROTECT,
    GOOD,
    InitiatorError,
    RemoteSession,
    Sense,
    iscsi_ls_luns,
)
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer
from tests.fixtures.tgt import Tgtd, start_tgtd, stop_tgtd

# Generous bounds for one initiator call on a shared 2-core machine; they only stop a hung
# call from hanging the test, they measure nothing.
CALL_TIMEOUT = 60
LS_TIMEOUT = 30
UNIT_ATTENTION = 6


def serial_of(up: UploadedImage) -> str:
    return identity.rootfs(up.rootfs_url, up.rootfs_etag).serial


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def session(w: Worker, lun: int) -> RemoteSession:
    assert w.tgtd is not None
    return RemoteSession(w.tgtd.portal, w.iqn, lun, timeout=CALL_TIMEOUT)


def tgt_lun_of(w: Worker, serial: str) -> int | None:
    """The LUN tgtd holds for ``serial`` (read with tgtadm, not through the daemon)."""
    return next((n for n, lu in w.tgt_luns().items() if lu.scsi_sn == serial), None)


def client_luns(w: Worker) -> dict[int, str]:
    """What an initiator sees: every data LUN of the worker's target and its VPD serial."""
    assert w.tgtd is not None
    out = {}
    for lun in iscsi_ls_luns(w.tgtd.portal, timeout=LS_TIMEOUT).get(w.iqn, ()):
        if lun == 0:
            continue
        with session(w, lun) as s:
            out[lun] = s.call("serial")
    return out


def exported(w: Worker, up: UploadedImage) -> int:
    """Wait until the image's LUN exists and is ready for initiators; its id."""
    serial = serial_of(up)
    lun: int = wait_until(f"{up.name} to be exported", lambda: tgt_lun_of(w, serial),
                          worker=w, timeout=120)
    wait_until(f"the target to accept logins for {up.name}",
               lambda: _ready(w), worker=w, timeout=60)
    return lun


def _ready(w: Worker) -> bool:
    assert w.tgtd is not None
    ours = next((t for t in w.tgtd.tgtadm.show() if t.name == w.iqn), None)
    return ours is not None and ours.state == "ready" and "ALL" in ours.acl


def node_read(s: RemoteSession, lba: int, blocks: int, size: int) -> bytes:
    """READ16 as a Linux initiator does it: a UNIT ATTENTION (e.g. 3F/0E, REPORTED LUNS
    DATA HAS CHANGED, raised on every session when a LUN is added or removed) is reported
    once per session and the command is retried; any other failure is an error."""
    cdb = bytes([0x88, 0]) + struct.pack(">QI", lba, blocks) + bytes(2)
    for _ in range(3):
        sense: Sense
        sense, data = s.call("command", cdb, blocks * size)
        if sense.status == GOOD:
            return data
        if (sense.status, sense.key) != (CHECK_CONDITION, UNIT_ATTENTION):
            break
    raise InitiatorError(f"READ16 of LBA {lba}: status {sense.status}, sense key "
                         f"{sense.key}, ascq {sense.ascq:#06x}")


class Reader:
    """A booted node: one initiator session reading a LUN again and again in a thread."""

    def __init__(self, w: Worker, lun: int, every: float = 0.2) -> None:
        self.session = session(w, lun)
        self.every = every
        self.reads = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"reader-{lun}")

    def _loop(self) -> None:
        try:
            lba = 0
            blocks, size = self.session.call("capacity")
            while not self._stop.wait(self.every):
                data = node_read(self.session, lba, min(128, blocks - lba), size)
                if lba == 0 and data[:4] != b"hsqs":
                    self.errors.append(f"block 0 starts with {data[:4]!r}")
                    return
                self.reads += 1
                lba = (lba + 128) % blocks
        except InitiatorError as exc:
            self.errors.append(str(exc))

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(CALL_TIMEOUT + 5)
        self.session.close()


@contextmanager
def reading(w: Worker, lun: int) -> Iterator[Reader]:
    with Reader(w, lun) as reader:
        yield reader


def read_back(w: Worker, lun: int, tmp_path: Path, name: str) -> tuple[str, int, Path]:
    copy = tmp_path / f"{name}-read-back.squashfs"
    with session(w, lun) as s:
        digest, nbytes = s.call("read_all", 256, str(copy))
    return digest, nbytes, copy


def s3_sha256(s3_client: Any, up: UploadedImage) -> str:
    bucket, _, key = up.rootfs_url.removeprefix("s3://").partition("/")
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return hashlib.sha256(body).hexdigest()


def unpack_marker(image: Path, tmp_path: Path) -> str:
    out = tmp_path / f"{image.stem}-unpacked"
    subprocess.run(["unsquashfs", "-no-progress", "-d", str(out), str(image)],
                   check=True, capture_output=True, timeout=120)
    return (out / MARKER).read_text()


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


def recording_tgtadm(path: Path, calls: Path) -> Path:
    """A ``tgtadm`` that appends its arguments to ``calls``, then runs the real one."""
    real = shutil.which("tgtadm") or "/usr/sbin/tgtadm"
    path.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(calls))}\n'
                    f'exec {shlex.quote(real)} "$@"\n')
    path.chmod(0o755)
    return path


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


def shut_down(tgtd: Tgtd) -> None:
    """Stop tgtd as an operator does: delete every target (forced), then ask tgtd to exit,
    which it refuses while a target exists. The running marshal may re-create its target
    in between, so repeat until tgtd agrees; then wait until it has exited."""

    def delete_all() -> bool:
        for target in tgtd.tgtadm.show():
            tgtd.admin("--mode", "target", "--op", "delete", "--force", "--tid",
                       str(target.tid))
        done = subprocess.run(["tgtadm", "-C", str(tgtd.control_port), "--mode", "system",
                               "--op", "delete"], capture_output=True, text=True, timeout=15,
                              check=False)
        return done.returncode == 0

    wait_until("tgtd to accept the system delete", delete_all, timeout=30)
    wait_until("tgtd to exit", lambda: _gone(tgtd.pid), timeout=30)


def _gone(pid: int) -> bool:
    try:
        # The fixture's Popen reaps it later; until then an exited tgtd is a zombie.
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True
