"""Client-side helpers for the tgt end-to-end tests: a libiscsi initiator acting as a node.

Owns finding LUNs by serial the way a node does, reading with a node's retry of unit
attentions, continuous readers in threads, read-back checks, and operator actions on tgtd
(a recording ``tgtadm``, a clean tgtd shutdown). Every initiator call is bounded by a timeout
and addresses the loopback portal only. Must not talk to the marshal: the target is read
from tgtd with ``tgtadm``.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sbps.core import identity
from tests.fixtures.images import MARKER, UploadedImage
from tests.fixtures.iscsi import (
    CHECK_CONDITION,
    GOOD,
    InitiatorError,
    RemoteSession,
    Sense,
    iscsi_ls_luns,
)
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.tgt import Tgtd

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


def recording_tgtadm(path: Path, calls: Path) -> Path:
    """A ``tgtadm`` that appends its arguments to ``calls``, then runs the real one."""
    real = shutil.which("tgtadm") or "/usr/sbin/tgtadm"
    path.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(calls))}\n'
                    f'exec {shlex.quote(real)} "$@"\n')
    path.chmod(0o755)
    return path


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
