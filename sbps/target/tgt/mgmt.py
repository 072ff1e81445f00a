"""A small client of tgtd's management socket: one request, one answer, no process.

Owns the binary protocol ``tgtadm`` speaks to ``tgtd``, so that a request carrying a CHAP
secret never becomes a process's argument or environment (anyone can read those in
``/proc``). Written from tgt's own source (github.com/fujita/tgt, tag v1.0.85, the version
Debian 12 ships): ``usr/tgtadm.h`` (``struct tgtadm_req``, ``struct tgtadm_rsp`` and the
mode/op enums), ``usr/tgtadm.c`` (``ipc_mgmt_connect``/``ipc_mgmt_req``/``ipc_mgmt_rsp``: the
socket path ``/var/run/tgtd/socket.<control port>``, the header, then the parameter string
with its NUL; the answer header, then ``len - 8`` bytes of text) and ``usr/mgmt.c``
(``account_mgmt`` reads ``user=<name>,password=<secret>``; ``ipc_perm`` accepts only a peer
with tgtd's own uid and gid, as for tgtadm). The layout is x86-64/aarch64 LP64, checked by a
unit test against the C header and by integration tests against the installed tgtd.

Must not log, or put into an error, the parameter string (it may carry a secret), and must
not decide what to change on the target (``sbps.target.tgt.backend`` does).
"""

from __future__ import annotations

import enum
import socket
import struct
from dataclasses import dataclass

from sbps.core.errors import BackendError

SOCKET_PREFIX = "/var/run/tgtd/socket"
#: ``struct tgtadm_req``: mode, op, lld[64], len, tid, sid, lun, cid, host_no,
#: device_type, ac_dir, pack, force (120 bytes, no padding on LP64).
REQ = struct.Struct("=ii64sIiQQIIIIII")
#: ``struct tgtadm_rsp``: err, len (len counts this header too).
RSP = struct.Struct("=II")
# tgtd refuses request data over MAX_MGT_BUFSIZE (mgmt.c); answers are bounded here so a
# confused peer cannot make the marshal allocate without limit.
MAX_PARAMS = 8 * 1024
MAX_ANSWER = 64 * 1024 * 1024
NO_LUN = 2**64 - 1
GLOBAL_TID = -1  # tgtadm.c: account bind/unbind without --tid use GLOBAL_TID (~0U)


class Mode(enum.IntEnum):
    SYSTEM = 0
    TARGET = 1
    DEVICE = 2  # tgtadm's "logicalunit"
    PORTAL = 3
    LLD = 4
    SESSION = 5
    CONNECTION = 6
    ACCOUNT = 7


class Op(enum.IntEnum):
    NEW = 0
    DELETE = 1
    SHOW = 2
    BIND = 3
    UNBIND = 4
    UPDATE = 5
    STATS = 6
    START = 7
    STOP = 8


#: tgtadm_error.h, with tgtadm.c's words for each.
ERRORS = ("success", "unknown error", "out of memory", "can't find the driver",
          "can't find the target", "can't find the logical unit", "can't find the session",
          "can't find the connection", "can't find the binding", "this target already exists",
          "this logical unit number already exists", "this binding already exists",
          "this access control rule already exists",
          "this access control rule does not exist", "this account already exists",
          "can't find the account", "too many accounts", "invalid request",
          "this target already has an outgoing account", "this target is still active",
          "this logical unit is still active", "this driver is busy",
          "this operation isn't supported", "unknown parameter",
          "this device has Prevent Removal set")


@dataclass(frozen=True)
class Request:
    """One management request, as ``tgtadm`` would build it from its options."""

    mode: Mode
    op: Op
    params: str = ""
    tid: int = -1
    lun: int = NO_LUN
    outgoing: bool = False
    force: bool = False
    lld: str = "iscsi"

    def encode(self) -> bytes:
        body = (self.params.encode() + b"\0") if self.params else b""
        if b"\0" in body[:-1] or len(body) > MAX_PARAMS:
            raise ValueError("tgtd request parameters must be under 8 KiB, without NUL")
        return REQ.pack(self.mode, self.op, self.lld.encode(), REQ.size + len(body),
                        self.tid, 0, self.lun, 0, 0, 0, 1 if self.outgoing else 0, 0,
                        1 if self.force else 0) + body


def account_new(user: str, secret: str) -> Request:
    """``tgtadm --mode account --op new --user U --password S``, without the process.

    tgtd splits ``user=`` at the first comma, so a comma in the name would move the secret
    (``sbps.target.access.files`` refuses it already; this is the last line)."""
    if not user or "," in user or "\0" in user + secret:
        raise ValueError("a CHAP user for tgt is non-empty, without ',' or NUL")
    return Request(Mode.ACCOUNT, Op.NEW, f"user={user},password={secret}")


class TgtdSocket:
    """Sends requests to the tgtd on ``control_port``; one connection per request."""

    def __init__(self, control_port: int = 0, timeout: float = 15.0,
                 prefix: str = SOCKET_PREFIX) -> None:
        self.path = f"{prefix}.{control_port}"
        self.timeout = timeout

    def __call__(self, request: Request, *, operation: str, obj: str) -> str:
        """Send ``request``; the answer's text (empty for most writes). A refused request is
        a permanent BackendError with tgt's words; an unreachable tgtd a temporary one."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(request.encode())
                err, length = RSP.unpack(_recv_exactly(sock, RSP.size))
                if length < RSP.size or length - RSP.size > MAX_ANSWER:
                    raise BackendError(operation, obj, f"tgtd answered a length of {length}",
                                       temporary=True, code="tgt_unreachable")
                text = _recv_exactly(sock, length - RSP.size) if err == 0 else b""
        except TimeoutError as exc:
            raise BackendError(operation, obj, f"tgtd did not answer within "
                               f"{self.timeout:g}s", temporary=True,
                               code="tgt_timeout") from exc
        except OSError as exc:
            raise BackendError(operation, obj, f"cannot reach tgtd at {self.path}: "
                               f"{exc.strerror or exc}", temporary=True,
                               code="tgt_unreachable") from exc
        if err != 0:
            words = ERRORS[err] if err < len(ERRORS) else f"error {err}"
            raise BackendError(operation, obj, f"{words} (tgtd error {err})",
                               code="tgt_refused")
        return text.split(b"\0", 1)[0].decode(errors="replace")


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks: list[bytes] = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionResetError(0, "tgtd closed the connection early")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
