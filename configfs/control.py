"""Client for the emulation's side channel (tests use it; the daemon under test never does).

Owns: the JSON-lines request/response framing on the control Unix socket and a typed method per
server command. Must not: reach into the emulation's memory or the configfs tree directly.
"""

from __future__ import annotations

import json
import socket
from typing import Any


class ControlError(RuntimeError):
    """The emulation refused a control request."""


class ControlClient:
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout

    def call(self, op: str, **args: Any) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            with sock.makefile("rwb") as stream:
                stream.write(json.dumps({"op": op, **args}).encode() + b"\n")
                stream.flush()
                reply = json.loads(stream.readline())
        if not reply["ok"]:
            raise ControlError(reply["error"])
        return reply["result"]

    def ping(self) -> bool:
        return self.call("ping") == "pong"

    # simulated traffic; ``lun`` is a TPG LUN directory (absolute, or from ``target/``)
    def read(self, lun: str, nbytes: int, commands: int = 1,
             initiator: str | None = None) -> dict[str, int]:
        return dict(self.call("io", lun=lun, kind="read", nbytes=nbytes, commands=commands,
                              initiator=initiator))

    def write(self, lun: str, nbytes: int, commands: int = 1,
              initiator: str | None = None) -> dict[str, int]:
        return dict(self.call("io", lun=lun, kind="write", nbytes=nbytes, commands=commands,
                              initiator=initiator))

    def test_unit_ready(self, lun: str, commands: int = 1,
                        initiator: str | None = None) -> dict[str, int]:
        return dict(self.call("io", lun=lun, kind="tur", commands=commands,
                              initiator=initiator))

    # sessions (logins) on target/iscsi/<target>/tpgt_<tpgt>
    def add_session(self, target: str, initiator: str, tpgt: int = 1,
                    address: str = "127.0.0.1") -> int:
        return int(self.call("add_session", target=target, initiator=initiator, tpgt=tpgt,
                             address=address))

    def remove_session(self, target: str, initiator: str, tpgt: int = 1) -> None:
        self.call("remove_session", target=target, initiator=initiator, tpgt=tpgt)

    def sessions(self) -> list[dict[str, Any]]:
        return list(self.call("sessions"))

    # fault injection on mutating calls (write, mkdir, rmdir, symlink, unlink)
    def inject(self, path: str, error: str | int = "EIO", ops: list[str] | None = None,
               prefix: bool = False, once: bool = True) -> int:
        return int(self.call("inject", path=path, error=error, ops=ops, prefix=prefix,
                             once=once))

    def clear_faults(self, ident: int | None = None) -> None:
        self.call("clear_faults", ident=ident)

    def faults(self) -> list[dict[str, Any]]:
        return list(self.call("faults"))

    # mutation counters
    def counters(self) -> dict[str, Any]:
        return dict(self.call("counters"))

    def writes(self) -> int:
        """Successful mutating calls (write, mkdir, rmdir, symlink, unlink) since the last reset."""
        return int(self.counters()["total"])

    def reset_counters(self) -> None:
        self.call("reset_counters")
