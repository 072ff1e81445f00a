"""Serving: the manual drain survives a restart, and a worker that starts closed never
enables its target (it leaves it as it finds it for the drain delay, then disables it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sbps.reconcile.serving import Serving


class Gate:
    name = "test"

    def __init__(self, open_: bool) -> None:
        self.open = open_

    async def is_open(self) -> bool:
        return self.open


class Registrar:
    name = "test"

    def __init__(self) -> None:
        self.calls: list[bool] = []

    async def ensure(self, present: bool) -> None:
        self.calls.append(present)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _serving(gate: Gate, clock: Clock, drain_file: Path | None = None) -> Serving:
    return Serving(gate, Registrar(), drain_delay=10, clock=clock,  # type: ignore[arg-type]
                   drain_file=drain_file)


def _decide(s: Serving) -> bool | None:
    return asyncio.run(s.decide([]))


def test_closing_after_serving_serves_for_the_delay() -> None:
    gate, clock = Gate(True), Clock()
    s = _serving(gate, clock)
    assert _decide(s) is True
    gate.open = False
    assert _decide(s) is True
    clock.now += 10
    assert _decide(s) is False


def test_starting_closed_never_enables() -> None:
    gate, clock = Gate(False), Clock()
    s = _serving(gate, clock)
    assert _decide(s) is None  # leave the target as it is: never enable it
    clock.now += 10
    assert _decide(s) is False
    gate.open = True
    assert _decide(s) is True


def test_drain_is_kept_across_a_restart(tmp_path: Path) -> None:
    flag = tmp_path / "drained"
    gate, clock = Gate(True), Clock()
    s = _serving(gate, clock, flag)
    assert _decide(s) is True
    s.drain(True)
    assert flag.exists() and flag.stat().st_mode & 0o777 == 0o600
    again = _serving(gate, clock, flag)  # the restarted daemon
    assert again.drained and not again.open
    assert _decide(again) is None
    again.drain(False)
    assert not flag.exists()
    assert _decide(_serving(gate, clock, flag)) is True


def test_dns_is_registered_only_on_addresses_a_portal_listens_on() -> None:
    from sbps.core.target_state import Portal, TargetState

    reg = Registrar()
    site = {"nmn": "10.252.1.10", "hsn": "10.253.1.10"}
    s = Serving(Gate(True), reg, drain_delay=0, clock=Clock(),  # type: ignore[arg-type]
                addresses=lambda: site)
    kept = TargetState("iqn", exists=True, tpg_enabled=True,
                       portals=frozenset({Portal("10.252.1.10"), Portal("10.253.1.10")}))
    errors: list[str] = []
    assert asyncio.run(s.sync_dns(kept, errors)) and not errors
    # The HSN portal gone (or never there): refused, naming the address and the keys.
    nmn_only = TargetState("iqn", exists=True, tpg_enabled=True,
                           portals=frozenset({Portal("10.252.1.10")}))
    calls = list(reg.calls)
    assert not asyncio.run(s.sync_dns(nmn_only, errors))
    assert reg.calls == calls
    assert "10.253.1.10" in errors[0] and "dns.hsn_address" in errors[0]
