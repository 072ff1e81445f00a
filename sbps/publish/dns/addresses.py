"""This worker's address on each network: from ``dns.<net>_address`` or the named interface.

Owns reading an interface's IPv4 address (the SIOCGIFADDR ioctl, so no ``ip`` process) and
the errors that name the interface and the configuration key. Blocking but instant; must
not cache (an interface may get its address after the daemon started).
"""

from __future__ import annotations

import fcntl
import socket
import struct

from sbps.config import Config
from sbps.core.errors import UpstreamTemporaryError
from sbps.publish.dns.records import check_address

SIOCGIFADDR = 0x8915
_IFNAMSIZ = 16


def interface_address(ifname: str) -> str:
    """The primary IPv4 address of ``ifname``; OSError if it has none or does not exist."""
    raw = ifname.encode()
    if not raw or len(raw) >= _IFNAMSIZ:
        raise OSError(f"invalid interface name {ifname!r}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("256s", raw)
        res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, req)
    return socket.inet_ntoa(res[20:24])


def network_addresses(cfg: Config) -> dict[str, str]:
    """``{net: address}`` for every ``dns.networks``; an interface without an address is a
    temporary error (it may come up later) naming the interface and both keys."""
    out: dict[str, str] = {}
    for net in cfg.dns.networks:
        configured = str(getattr(cfg.dns, f"{net}_address", "")).strip()
        if configured:
            out[net] = check_address(f"dns.{net}_address", configured)
            continue
        ifname = str(getattr(cfg.dns, f"{net}_interface", ""))
        try:
            out[net] = interface_address(ifname)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UpstreamTemporaryError(
                f"dns: no IPv4 address for network {net}: interface {ifname!r} "
                f"(dns.{net}_interface): {reason}; set dns.{net}_address to give it "
                "explicitly", code="dns_address") from exc
    return out
