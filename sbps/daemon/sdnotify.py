"""systemd notify protocol over ``NOTIFY_SOCKET``: READY, STATUS, WATCHDOG, STOPPING.

Owns the datagram socket only, implemented directly (no libsystemd). Without
``NOTIFY_SOCKET`` every call is a no-op, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if address.startswith("@"):
            self._address = b"\0" + address[1:].encode()
        elif address.startswith("/"):
            self._address = address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and mine else 0.0

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str) -> None:
        if self._address is None:
            return
        message = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(self._address)
                s.sendall(message)
        except OSError as exc:
            # systemd going away must never take the daemon down with it.
            log.debug("sd_notify failed: %s", exc)

    def ready(self, status: str) -> None:
        self.send(ready="1", status=status)

    def status(self, status: str) -> None:
        self.send(status=status)

    def watchdog(self) -> None:
        self.send(watchdog="1")

    def stopping(self) -> None:
        self.send(stopping="1", status="stopping")
