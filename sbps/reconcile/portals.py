"""Portals: ``target.portals`` as values, and which portals sbps created.

Owns ``<state_dir>/portals.json``, the record of the portals sbps created on this worker's
TPG (LIO and tgt keep no mark on a portal, so the record is ours): a portal is recorded
only after its creation succeeded, and forgotten once it is gone from the target, so a
portal someone else creates later is never taken for ours. A lost record makes sbps treat
its own portals as the site's: kept, never removed (the safe side).
Must not touch the target: plan() decides (``plan_portals``), the backend applies.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from sbps.core.actions import Action, SetPortals
from sbps.core.decode import DecodeError, loads
from sbps.core.target_state import Portal

log = logging.getLogger(__name__)


class PortalLedger:
    def __init__(self, state_dir: str) -> None:
        self.path = Path(state_dir) / "portals.json"
        self.created: frozenset[Portal] = self._load()

    def _load(self) -> frozenset[Portal]:
        try:
            data = loads(self.path.read_bytes(), "state", str(self.path), expect=dict)
        except FileNotFoundError:
            return frozenset()
        except (OSError, DecodeError) as exc:
            log.warning("ignoring unreadable %s (%s): every portal is kept as not sbps's",
                        self.path, exc)
            return frozenset()
        entries = data.get("created")
        out = set()
        for e in entries if isinstance(entries, list) else ():
            if isinstance(e, dict) and isinstance(e.get("address"), str) \
                    and isinstance(e.get("port"), int):
                out.add(Portal(e["address"], e["port"]))
        return frozenset(out)

    def _save(self, created: frozenset[Portal]) -> None:
        if created == self.created:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".portals.")
        with os.fdopen(fd, "w") as fh:
            json.dump({"created": [{"address": p.address, "port": p.port}
                                   for p in sorted(created, key=str)]}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self.created = created

    def current(self, live: frozenset[Portal]) -> frozenset[Portal]:
        """The portals sbps created that the target still has (the others are forgotten)."""
        self._save(self.created & live)
        return self.created

    def applied(self, action: Action) -> None:
        """Record what a successful ``SetPortals`` created and removed."""
        if isinstance(action, SetPortals):
            self._save((self.created - action.remove) | action.add)


def parse_portals(texts: Iterable[str], default_port: int) -> frozenset[Portal]:
    """``target.portals`` as values; empty when none is configured (keep the TPG's)."""
    return frozenset(_portal(p, default_port) for p in texts)


def _portal(text: str, default_port: int) -> Portal:
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return Portal(host.rstrip("]"), int(port) if port else default_port)
    host, sep, port = text.rpartition(":")
    if sep and host and port.isdigit() and ":" not in host:
        return Portal(host, int(port))
    return Portal(text, default_port)

