"""A small userspace iSCSI initiator: libiscsi through ``cython-iscsi`` (the ``demo`` extra).

Used by the demo to prove a client reads an image, and by the tests and benchmarks.

Owns talking to a target the way a diskless node would (login, INQUIRY, READ CAPACITY,
READ16, a refused WRITE16) on the loopback portal only. Must not hang a test: every session
lives in its own child process, and every call waits at most ``timeout`` seconds before the
child is killed (``InitiatorTimeout``). Inside the child, libiscsi runs with a PDU timeout
and auto-reconnect off, so a target that drops the session fails the call at once.

``cython-iscsi`` wraps only context, login and raw commands. What it leaves out
(``iscsi_set_timeout``, ``iscsi_set_noautoreconnect``, CHAP, a task's sense data) is called
through ctypes on the same ``libiscsi.so.7``, with the C pointers read from the Cython
objects (one pointer right after the object header; ``_c_pointer`` checks the layout).

Also: ``iscsi_ls`` / ``iscsi_ls_luns``, wrappers of libiscsi-bin's ``iscsi-ls``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import multiprocessing
import re
import struct
import subprocess
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

INITIATOR = "iqn.2024-01.test.sbps:initiator"
LOOPBACK = "127.0.0.1"
GOOD, CHECK_CONDITION = 0, 2
DATA_PROTECT, ILLEGAL_REQUEST = 7, 5
_PENDING = -1


class InitiatorError(Exception):
    """A login or command failed at the transport level (not a SCSI status)."""


class InitiatorTimeout(InitiatorError):
    """The initiator did not answer in time; its process was killed."""


@dataclass(frozen=True)
class Sense:
    status: int
    key: int
    ascq: int
    """ASC and ASCQ as libiscsi reports them: ``0x2700`` is WRITE PROTECTED."""


@dataclass(frozen=True)
class Designator:
    """One VPD 0x83 designation descriptor; ``value`` in hex (binary) or text (ASCII)."""

    code_set: int
    association: int
    type: int
    value: str


def linux_wwid(designators: tuple[Designator, ...]) -> str:
    """The WWID Linux derives from VPD 0x83 (``scsi_vpd_lun_id``, as ``multipath`` sees it):
    the longest binary NAA designator of the logical unit, ``3`` + its hex; "" if none."""
    naa = [d for d in designators if d.type == 3 and d.association == 0 and d.code_set == 1]
    return "3" + max(naa, key=lambda d: len(d.value)).value if naa else ""


class _Sense(ctypes.Structure):
    _fields_ = [("error_type", ctypes.c_ubyte), ("key", ctypes.c_int), ("ascq", ctypes.c_int),
                ("flags", ctypes.c_ubyte), ("bit_pointer", ctypes.c_ubyte),
                ("field_pointer", ctypes.c_uint16)]


class _TaskHead(ctypes.Structure):
    """The leading fields of libiscsi 1.19's ``struct scsi_task`` (scsi-lowlevel.h)."""

    _fields_ = [("status", ctypes.c_int), ("cdb_size", ctypes.c_int),
                ("xfer_dir", ctypes.c_int), ("expxferlen", ctypes.c_int),
                ("cdb", ctypes.c_ubyte * 16), ("residual_status", ctypes.c_int),
                ("residual", ctypes.c_size_t), ("sense", _Sense)]


def _c_pointer(obj: Any) -> int:
    # A Cython cdef class with one pointer field: PyObject header, then the pointer.
    size = type(obj).__basicsize__
    if size != object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p):
        raise RuntimeError(f"unexpected cython-iscsi object layout ({size} bytes)")
    value = ctypes.c_void_p.from_address(id(obj) + size - ctypes.sizeof(ctypes.c_void_p))
    if not value.value:
        raise InitiatorError("cython-iscsi object without its C pointer")
    return int(value.value)


class Session:
    """One logged-in session to one LUN, in this process. Use ``RemoteSession`` in tests."""

    def __init__(self, portal: str, target: str, lun: int, *, initiator: str = INITIATOR,
                 user: str = "", secret: str = "", target_user: str = "",
                 target_secret: str = "", pdu_timeout: int = 5) -> None:
        import iscsi  # cython-iscsi; imported here so the parent never loads libiscsi

        if not portal.startswith(LOOPBACK + ":"):
            raise ValueError(f"tests use the loopback portal only, not {portal}")
        self._iscsi, self.lun = iscsi, lun
        self._lib = ctypes.CDLL("libiscsi.so.7")
        self._ctx = iscsi.Context(initiator)
        ctx = ctypes.c_void_p(_c_pointer(self._ctx))
        self._lib.iscsi_set_timeout(ctx, pdu_timeout)
        self._lib.iscsi_set_noautoreconnect(ctx, 1)
        if user:
            self._lib.iscsi_set_initiator_username_pwd(ctx, user.encode(), secret.encode())
        if target_user:
            # Mutual CHAP: the initiator checks the target's answer too.
            self._lib.iscsi_set_target_username_pwd(ctx, target_user.encode(),
                                                    target_secret.encode())
        self._ctx.set_targetname(target)
        self._ctx.set_session_type(iscsi.iscsi_session_type.ISCSI_SESSION_NORMAL)
        self._ctx.set_header_digest(iscsi.iscsi_header_digest.ISCSI_HEADER_DIGEST_NONE)
        try:
            self._ctx.connect(portal, lun)
        except RuntimeError as exc:
            self._lib.iscsi_get_error.restype = ctypes.c_char_p
            raise InitiatorError(f"login to {target} at {portal} failed: "
                                 f"{self._lib.iscsi_get_error(ctx).decode()}") from exc

    def command(self, cdb: bytes, data_in: int = 0, data_out: bytes = b"",
                lun: int | None = None) -> tuple[Sense, bytes]:
        iscsi = self._iscsi
        direction = (iscsi.scsi_xfer_dir.SCSI_XFER_WRITE if data_out else
                     iscsi.scsi_xfer_dir.SCSI_XFER_READ if data_in else
                     iscsi.scsi_xfer_dir.SCSI_XFER_NONE)
        task = iscsi.Task(cdb, direction, data_in or len(data_out))
        head = _TaskHead.from_address(_c_pointer(task))
        head.status = _PENDING  # the binding drops the sync call's result: detect failure
        buf = bytearray(data_in)
        self._ctx.command(self.lun if lun is None else lun, task,
                          bytearray(data_out) if data_out else None, buf if data_in else None)
        if head.status == _PENDING or head.status & 0x0F000000:
            raise InitiatorError(f"command {cdb[0]:#04x} failed at the transport level "
                                 f"(status {head.status:#x})")
        got = data_in - head.residual if head.residual_status == 1 else data_in
        return Sense(head.status, head.sense.key, head.sense.ascq), bytes(buf[:got])

    def _good(self, cdb: bytes, data_in: int) -> bytes:
        sense, data = self.command(cdb, data_in)
        if sense.status != GOOD:
            raise InitiatorError(f"command {cdb[0]:#04x}: status {sense.status}, sense key "
                                 f"{sense.key}, ascq {sense.ascq:#06x}")
        return data

    def vpd(self, page: int) -> bytes:
        data = self._good(bytes([0x12, 1, page, 0x01, 0x00, 0]), 256)
        return data[4:4 + struct.unpack(">H", data[2:4])[0]]

    def serial(self) -> str:
        """VPD 0x80, without tgt's left padding."""
        return self.vpd(0x80).decode("ascii").strip()

    def designators(self) -> tuple[Designator, ...]:
        data, out = self.vpd(0x83), []
        while len(data) >= 4:
            n = data[3]
            body = data[4:4 + n]
            value = body.decode("ascii", "replace").strip("\0 ") if data[0] & 0xF in (2, 3) \
                else body.hex()
            out.append(Designator(data[0] & 0xF, (data[1] >> 4) & 3, data[1] & 0xF, value))
            data = data[4 + n:]
        return tuple(out)

    def wwid(self) -> str:
        return linux_wwid(self.designators())

    def inquiry(self) -> tuple[str, str]:
        data = self._good(bytes([0x12, 0, 0, 0, 96, 0]), 96)
        return data[8:16].decode().strip(), data[16:32].decode().strip()

    def capacity(self) -> tuple[int, int]:
        """READ CAPACITY 16: (number of blocks, block size)."""
        data = self._good(bytes([0x9E, 0x10]) + bytes(8) + struct.pack(">I", 32) + bytes(2),
                          32)
        last, size = struct.unpack(">QI", data[:12])
        return last + 1, size

    def read(self, lba: int, blocks: int, block_size: int) -> bytes:
        cdb = bytes([0x88, 0]) + struct.pack(">QI", lba, blocks) + bytes(2)
        return self._good(cdb, blocks * block_size)

    def read_all(self, chunk: int = 256, out_path: str = "") -> tuple[str, int]:
        """READ16 every block; returns (SHA-256 hex, bytes). ``out_path`` keeps a copy."""
        blocks, size = self.capacity()
        h = hashlib.sha256()
        out = open(out_path, "wb") if out_path else None  # noqa: SIM115
        try:
            for lba in range(0, blocks, chunk):
                data = self.read(lba, min(chunk, blocks - lba), size)
                h.update(data)
                if out is not None:
                    out.write(data)
        finally:
            if out is not None:
                out.close()
        return h.hexdigest(), blocks * size

    def write_probe(self) -> Sense:
        """WRITE16 block 0 with the bytes it already holds: harmless if it were accepted."""
        _, size = self.capacity()
        data = self.read(0, 1, size)
        cdb = bytes([0x8A, 0]) + struct.pack(">QI", 0, 1) + bytes(2)
        return self.command(cdb, data_out=data)[0]

    def close(self) -> None:
        self._ctx.disconnect()


def _serve(conn: Connection, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        session = Session(*args, **kwargs)
    except Exception as exc:
        conn.send((False, f"{type(exc).__name__}: {exc}"))
        return
    conn.send((True, None))
    while True:
        method, margs = conn.recv()
        if method == "close":
            session.close()
            conn.send((True, None))
            return
        try:
            conn.send((True, getattr(session, method)(*margs)))
        except Exception as exc:
            conn.send((False, f"{type(exc).__name__}: {exc}"))


class RemoteSession:
    """A ``Session`` in a child process; each call waits at most ``timeout`` seconds.

    ``submit``/``result`` split a call so many sessions can work at once (boot storm).
    """

    def __init__(self, portal: str, target: str, lun: int, *, timeout: float = 30,
                 **kwargs: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.timeout = timeout
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, (portal, target, lun), kwargs),
                                 daemon=True, name=f"initiator-{target}-{lun}")
        self._proc.start()
        child.close()
        try:
            self._wait(f"login to {target} LUN {lun}")
        except InitiatorError:
            self.kill()
            raise

    def _wait(self, what: str, timeout: float | None = None) -> Any:
        if not self._conn.poll(self.timeout if timeout is None else timeout):
            self.kill()
            raise InitiatorTimeout(f"{what}: no answer within {self.timeout:g}s")
        try:
            ok, value = self._conn.recv()
        except EOFError as exc:
            self.kill()
            raise InitiatorError(f"{what}: the initiator process died") from exc
        if not ok:
            raise InitiatorError(f"{what}: {value}")
        return value

    def submit(self, method: str, *args: Any) -> None:
        self._conn.send((method, args))

    def result(self, method: str, timeout: float | None = None) -> Any:
        return self._wait(method, timeout)

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        self.submit(method, *args)
        return self.result(method, timeout)

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(10)
        if not self._conn.closed:
            self._conn.close()

    def close(self) -> None:
        if self._proc.is_alive() and not self._conn.closed:
            with contextlib.suppress(InitiatorError):
                self.call("close", timeout=10)
        self._proc.join(10)
        self.kill()

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _iscsi_ls(args: list[str], timeout: float) -> str:
    done = subprocess.run(["iscsi-ls", "-i", INITIATOR, *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise InitiatorError(f"iscsi-ls {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def iscsi_ls(portal: str, timeout: float = 20) -> tuple[str, ...]:
    """Target names discovered (SendTargets) at a loopback portal."""
    if not portal.startswith(LOOPBACK + ":"):
        raise ValueError(f"tests use the loopback portal only, not {portal}")
    text = _iscsi_ls([f"iscsi://{portal}"], timeout)
    return tuple(m.group(1) for m in re.finditer(r"^Target:(\S+)", text, re.M))


def iscsi_ls_luns(portal: str, timeout: float = 20) -> dict[str, tuple[int, ...]]:
    """Per target, the LUN numbers ``iscsi-ls -s`` shows (controller LUN 0 included)."""
    if not portal.startswith(LOOPBACK + ":"):
        raise ValueError(f"tests use the loopback portal only, not {portal}")
    out: dict[str, list[int]] = {}
    current = ""
    for line in _iscsi_ls(["-s", f"iscsi://{portal}"], timeout).splitlines():
        m = re.match(r"^Target:(\S+)", line)
        if m:
            current = m.group(1)
            out.setdefault(current, [])
        m = re.match(r"^\s*Lun:(\d+)", line)
        if m and current:
            out[current].append(int(m.group(1)))
    return {k: tuple(v) for k, v in out.items()}
