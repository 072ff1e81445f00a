"""Whether this worker serves: the node gate, a manual drain, and DNS sequencing.

Owns the order that keeps clients safe: closing (gate closed or ``sbpsctl drain``)
withdraws this worker's DNS records first and keeps the target enabled for the drain delay,
so initiators move to other paths before the TPG is disabled; opening serves at once and
registers DNS only after a pass has the target enabled. A gate that cannot answer keeps its
last state, so an API outage never drains a worker. A manual drain is kept in a file in the
state directory, so a restart never reopens a drained worker. A worker that starts closed
never enables its target, not even for the drain delay: it keeps the target as it finds it
for the delay (an enabled one lets clients move), then disables it. DNS is registered only
when every A address has a portal listening on it (with the site's portals kept, an
address no portal listens on would send initiators nowhere: see docs/upgrade.md). Must not touch the
target itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from sbps.core.errors import SbpsError, TemporaryError
from sbps.core.interfaces import Gate, Registrar
from sbps.core.target_state import TargetState
from sbps.reconcile.plan_portals import unserved

log = logging.getLogger(__name__)


class Serving:
    def __init__(self, gate: Gate, registrar: Registrar, *, drain_delay: float,
                 clock: Callable[[], float], drain_file: Path | None = None,
                 addresses: Callable[[], dict[str, str]] | None = None) -> None:
        self.gate = gate
        self.addresses = addresses
        self.registrar = registrar
        self.drain_delay = drain_delay
        self.clock = clock
        self.drain_file = drain_file
        self.gate_open = True
        self.drained = drain_file is not None and drain_file.exists()
        if self.drained:
            log.info("manual drain on (kept in %s): this worker stays closed until "
                     "`sbpsctl drain --off`", drain_file)
        self.closed_at: float | None = None
        self._answered = False
        self._served = False  # whether this process has served (decided open) yet

    def drain(self, on: bool) -> None:
        """Close (or reopen) this worker by hand, whatever the gate says; kept across
        restarts. Raises TemporaryError (and changes nothing) if it cannot be kept."""
        if self.drain_file is not None:
            try:
                if on:
                    fd = os.open(self.drain_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "w") as fh:
                        fh.write("drained by sbpsctl drain / POST /v1/drain\n")
                        fh.flush()
                        os.fsync(fh.fileno())
                else:
                    self.drain_file.unlink(missing_ok=True)
            except OSError as exc:
                raise TemporaryError(f"cannot keep the drain in {self.drain_file}: "
                                     f"{exc.strerror}", code="state_write") from exc
        if on != self.drained:
            log.info("manual drain %s", "on" if on else "off")
        self.drained = on

    async def decide(self, errors: list[str]) -> bool | None:
        """Read the gate; withdraw DNS when closing. Returns whether the TPG serves now, or
        None for "leave it as it is" (a worker that started closed, during the delay)."""
        try:
            self.gate_open = await self.gate.is_open()
            self._answered = True
        except SbpsError as exc:
            errors.append(f"gate: {exc}")
            log.warning("gate %s unavailable, keeping its last state: %s", self.gate.name, exc)
            if not self._answered:
                self.gate_open = True
        if self.open:
            self.closed_at = None
            self._served = True
            return True
        if self.closed_at is None:
            self.closed_at = self.clock()
            log.info("closing (%s): withdrawing DNS, disabling the target in %.0f s",
                     "drain" if self.drained else f"gate {self.gate.name}", self.drain_delay)
            await self.ensure_dns(False, errors)
        if self.clock() >= self.closed_at + self.drain_delay:
            return False
        # Closing after serving: keep serving for the delay. Closed since start: never
        # enable; an enabled target (a restart) keeps serving for the delay.
        return True if self._served else None

    @property
    def open(self) -> bool:
        return self.gate_open and not self.drained

    def seconds_to_disable(self) -> float | None:
        if self.closed_at is None:
            return None
        return max(0.0, self.closed_at + self.drain_delay - self.clock())

    async def sync_dns(self, target: TargetState | None, errors: list[str]) -> bool:
        """Register (and repair) DNS while open with the target enabled."""
        if not self.open or target is None or not target.tpg_enabled:
            return False
        if self.addresses is not None:
            try:
                found = await asyncio.to_thread(self.addresses)
            except SbpsError:
                found = {}  # the registrar reports a missing address itself
            missing = unserved(found, target.portals)
            if missing:
                listed = ", ".join(f"{a} (dns.{net}_address or dns.{net}_interface)"
                                   for net, a in missing.items())
                portals = ", ".join(sorted(map(str, target.portals))) or "none"
                errors.append(f"dns: not registered: no portal listens on {listed}; the "
                              f"target's portals: {portals}; set the address to a portal's, "
                              "or list it in target.portals")
                log.warning("DNS not registered: no portal listens on %s (portals: %s)",
                            listed, portals)
                return False
        return await self.ensure_dns(True, errors)

    async def ensure_dns(self, present: bool, errors: list[str]) -> bool:
        try:
            await self.registrar.ensure(present)
            return present
        except SbpsError as exc:
            errors.append(f"dns: {exc}")
            log.warning("DNS %s failed: %s", "registration" if present else "withdrawal", exc)
            return False
