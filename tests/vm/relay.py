"""One guestfwd connection: qemu spawns this per guest connection (``cmd:`` form), with the
connection on stdin/stdout; it relays to the host address named in a file.

Owns nothing else. The file (one line ``127.0.0.1:PORT``) is read per connection, so a test
can point a fixed guest address at a server started later. Only loopback addresses are
accepted. Must not write to stderr: it is the guest's connection too.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys


def main(path: str) -> int:
    with open(path) as f:
        host, _, port = f.read().strip().rpartition(":")
    if host != "127.0.0.1":
        return 2
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "guest")
    sel.register(sock, selectors.EVENT_READ, "host")
    guest_open = True
    while True:
        for key, _ in sel.select():
            if key.data == "guest":
                data = os.read(0, 65536)
                if not data:
                    sel.unregister(0)
                    guest_open = False
                    sock.shutdown(socket.SHUT_WR)
                    continue
                sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view):]
        if not guest_open and not sel.get_map():
            return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1]))
    except Exception:
        raise SystemExit(1) from None
