"""The status snapshot: what every reader (HTTP API, metrics, sbpsctl) sees of the marshal.

Owns the frozen ``Status`` only. The reconciler builds a new one after every pass and
replaces it atomically, so readers need no lock and never see a half-updated state. Must
not import the reconciler or a target backend (the HTTP layer reads this module).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sbps.core.actions import Note, Plan
from sbps.core.model import Problem
from sbps.core.target_state import LunStats, TargetState
from sbps.reconcile.apply import Report
from sbps.reconcile.lifecycle import ImageStatus


@dataclass(frozen=True)
class Status:
    """The snapshot every reader (HTTP, metrics, sbpsctl) sees; replaced, never mutated."""

    iqn: str
    backend: str
    passes: int = 0
    last_pass_at: float | None = None
    last_pass_seconds: float = 0.0
    last_success_at: float | None = None
    ready: bool = False
    gate_open: bool = False
    serving: bool = False
    dns_registered: bool = False
    degraded: tuple[str, ...] = ()
    images: tuple[ImageStatus, ...] = ()
    problems: tuple[Problem, ...] = ()
    notes: tuple[Note, ...] = ()
    target: TargetState | None = None
    stats: dict[int, LunStats] = field(default_factory=dict)
    """Every LUN's I/O counters, read for a metrics scrape or /debug/state (not by passes)."""
    stats_at: float | None = None
    """When ``stats`` were read."""
    last_report: Report = field(default_factory=Report)
    last_plan: Plan = field(default_factory=Plan)
    errors: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    """Initiators logged in to this worker's target at the end of the pass."""
    bug: str = ""
    """Why the last pass failed with a bug (an exception that is not an SbpsError); the
    rest of the snapshot is the one of the pass before."""
