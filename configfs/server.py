"""The emulation's state and its side channel: a Unix-socket server speaking JSON lines.

Owns: the composition of tree, fault table and counters (``Emulation``), the test-only
operations (simulated I/O, sessions, faults, counters) and the socket loop that serves them.
Must not: be reachable through the configfs tree, or mount anything (``mount.py`` does).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from typing import Any

from .core import Core
from .faults import Counters, Faults
from .iscsi import Tpg, make_iscsi_fabric
from .lun import TpgLun
from .nodes import Group, Tree

log = logging.getLogger(__name__)


class Emulation:
    def __init__(self) -> None:
        self.core = Core({"iscsi": make_iscsi_fabric})
        self.tree = Tree(self.core.root)
        self.lock = threading.RLock()
        self.faults = Faults()
        self.counters = Counters()

    # --- control operations (all take and return JSON-compatible values) ---

    def ping(self) -> str:
        return "pong"

    def io(self, lun: str, kind: str = "read", nbytes: int = 0, commands: int = 1,
           initiator: str | None = None) -> dict[str, int]:
        """Simulate SCSI traffic on a TPG LUN: ``read``, ``write`` or ``tur`` (no data)."""
        if kind not in ("read", "write", "tur"):
            raise ValueError(f"unknown I/O kind {kind!r}")
        if kind == "tur":
            nbytes = 0
        port = self._tpg_lun(lun)
        device = port.device()
        if device is None:
            raise ValueError(f"{lun} has no storage object")
        reads, writes = (nbytes, 0) if kind == "read" else (0, nbytes)
        port.io.add(commands, reads, writes)
        device.io.add(commands, reads, writes)
        if initiator is not None:
            acl = port.tpg.acl(initiator)
            for mapped in acl.group.items() if acl is not None else []:
                link = mapped.links()[0] if mapped.links() else None
                if link is not None and link.target is port.group:
                    mapped.obj.io.add(commands, reads, writes)
        return {"in_cmds": port.io.cmds, "read_bytes": port.io.read_bytes,
                "write_bytes": port.io.write_bytes}

    def add_session(self, target: str, initiator: str, tpgt: int = 1,
                    address: str = "127.0.0.1") -> int:
        return self._tpg(target, tpgt).add_session(initiator, address).sid

    def remove_session(self, target: str, initiator: str, tpgt: int = 1) -> None:
        self._tpg(target, tpgt).remove_session(initiator)

    def sessions(self) -> list[dict[str, Any]]:
        out = []
        fabric = self.core.target.children.get("iscsi")
        for target in fabric.items() if isinstance(fabric, Group) else []:
            for tpg_group in target.items():
                tpg: Tpg = tpg_group.obj
                out += [{"target": tpg.wwn, "tpgt": tpg.tag, "initiator": s.initiator,
                         "sid": s.sid} for s in tpg.sessions.values()]
        return out

    def inject(self, path: str, error: int | str, ops: list[str] | None = None,
               prefix: bool = False, once: bool = True) -> int:
        kwargs: dict[str, Any] = {"prefix": prefix, "once": once}
        if ops:
            kwargs["ops"] = tuple(ops)
        return self.faults.inject(_rel(path), error, **kwargs)

    def clear_faults(self, ident: int | None = None) -> None:
        self.faults.clear(ident)

    def faults_list(self) -> list[dict[str, object]]:
        return self.faults.describe()

    def counters_get(self) -> dict[str, object]:
        return self.counters.snapshot()

    def reset_counters(self) -> None:
        self.counters.reset()

    def _tpg(self, target: str, tpgt: int) -> Tpg:
        node = self.tree.lookup(f"target/iscsi/{target}/tpgt_{tpgt}")
        if not isinstance(node, Group) or not isinstance(node.obj, Tpg):
            raise ValueError(f"no TPG {target}/tpgt_{tpgt}")
        return node.obj

    def _tpg_lun(self, lun: str) -> TpgLun:
        node = self.tree.lookup(_rel(lun))
        if not isinstance(node, Group) or not isinstance(node.obj, TpgLun):
            raise ValueError(f"{lun} is not a TPG LUN directory")
        return node.obj


def _rel(path: str) -> str:
    """Accept ``target/...``, ``/target/...`` or an absolute path inside any mount point."""
    parts = [p for p in path.split("/") if p]
    if "target" in parts:
        parts = parts[parts.index("target"):]
    return "/".join(parts)


COMMANDS = {"ping": "ping", "io": "io", "add_session": "add_session",
            "remove_session": "remove_session", "sessions": "sessions", "inject": "inject",
            "clear_faults": "clear_faults", "faults": "faults_list",
            "counters": "counters_get", "reset_counters": "reset_counters"}


class ControlServer:
    def __init__(self, emulation: Emulation, path: str) -> None:
        self.emulation = emulation
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, name="configfs-control",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            for raw in stream:
                stream.write(json.dumps(self.handle(raw)).encode() + b"\n")
                stream.flush()

    def handle(self, raw: bytes) -> dict[str, Any]:
        try:
            request = json.loads(raw)
            method = getattr(self.emulation, COMMANDS[request.pop("op")])
            with self.emulation.lock:
                return {"ok": True, "result": method(**request)}
        except Exception as e:  # every failure goes back to the client
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
