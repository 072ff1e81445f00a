"""What the HTTP app is given: the dependencies the daemon's composition root builds.

Owns the ``HttpDeps`` dataclass and the ``Control`` protocol (the part of the reconciler
the API drives: commands, never its state), so the app never reaches for a global and
tests can hand it a test double with the same shape. Must not construct any of these
objects itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from sbps.core.actions import Plan
from sbps.core.logs import set_level
from sbps.core.target_state import LoggedIn
from sbps.publish.http.bootdoc import BootSettings
from sbps.publish.http.limits import Limits
from sbps.publish.http.source import Status, StatusSource
from sbps.reconcile.commands import Lever, Levers


class Control(Protocol):
    """The reconciler as the API sees it (``sbps.reconcile.loop.Reconciler`` satisfies it).

    The image commands raise ``InputError`` with code ``not_found`` or ``conflict`` (see
    ``sbps.reconcile.commands``); each one that changes a pass triggers it and says which."""

    @property
    def status(self) -> Status: ...

    def trigger(self, reason: str) -> int: ...

    async def wait_for_pass(self, number: int) -> Status: ...

    async def dry_run(self) -> Plan: ...

    def levers(self) -> Levers:
        """The images held and forced now."""
        ...

    def hold(self, key: str) -> Lever: ...

    def release(self, key: str) -> Lever: ...

    def retire_now(self, key: str) -> Lever: ...

    async def promote(self, key: str) -> Lever: ...

    def drain(self, on: bool) -> int:
        """Close (or reopen) this worker by hand; returns the pass that acts on it."""
        ...

    async def sessions(self) -> tuple[str, ...]: ...

    async def session_table(self) -> tuple[LoggedIn, ...]:
        """The initiators logged in now, from the target's own session table."""
        ...

    async def refresh_counters(self) -> Status:
        """The status with every LUN's I/O counters read after this call (concurrent
        callers share one reading)."""
        ...


@dataclass(frozen=True)
class HttpDeps:
    """Everything the app needs. ``claims_held`` is blocking (it may read the journal) and
    runs in an executor; the other callables must be cheap and non-blocking."""

    control: Control
    source: StatusSource
    token: str
    registry: CollectorRegistry
    config: Mapping[str, Any] = field(default_factory=dict)
    tasks: Callable[[], list[dict[str, Any]]] = list
    boot: BootSettings | None = None
    """What ``GET /v1/bootparams`` adds to the snapshot; None: the endpoint answers 503
    (``node.system_name`` or ``node.site_domain`` is not set)."""
    claims_held: Callable[[], Mapping[str, int]] | None = None
    set_log_level: Callable[[str], None] = set_level
    allowed: Callable[[str | None, str | None], bool] | None = None
    """``allowed(tenant, initiator)`` in ``target.access = acl`` mode; None lists all."""
    store_refused: Callable[[], str] | None = None
    """Why the claim bucket failed the conditional-write probe ("" while it has not)."""
    notify_secret: str | None = None
    """Shared secret in the S3 notification path; None disables the endpoint."""
    limits: Limits = field(default_factory=Limits)
    """Connection, long-poll and header-time caps, and the counters of what they refused."""


DEPS = web.AppKey("sbps_deps", HttpDeps)
SPEC = web.AppKey("sbps_openapi", bytes)
