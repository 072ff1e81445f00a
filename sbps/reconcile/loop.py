"""The reconcile loop: triggers, passes as named steps, commands, the status snapshot.

Owns scheduling (interval, manual and notification triggers, coalesced: never two passes
at once, and a trigger during a pass causes exactly one more), the pass (what is wanted,
whether to serve, converge: read, gather, plan, apply; observe; DNS; publish), the admin
commands and the snapshot, replaced atomically so readers need no lock. Must not build
its parts: ``sbps.daemon.compose`` does, and gives them in ``Parts``.

Never removes on doubt (``desired``). A bug fails its pass, never the loop or the process
(safety invariant 10): anything but an SbpsError that escapes a pass is a failed pass in
the status (``Status.bug``, logged once by ``failures.PassFailures``), and the next pass
follows after a backoff. A staging task that fails with a bug fails its image the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from sbps.core.actions import ClaimLun, Plan
from sbps.core.errors import InputError, SbpsError
from sbps.core.interfaces import CatalogResult, CatalogSource, Claims
from sbps.core.model import DesiredImage
from sbps.core.target_state import LoggedIn, TargetState
from sbps.reconcile.apply import Report, apply
from sbps.reconcile.commands import ImageAction, ImageLevers, Lever, Levers
from sbps.reconcile.desired import DesiredState
from sbps.reconcile.effects import LoopEffects, Threads
from sbps.reconcile.failures import PassFailures
from sbps.reconcile.gather import Gather
from sbps.reconcile.lifecycle import Lifecycle
from sbps.reconcile.plan import PlanInput, plan, retiring
from sbps.reconcile.serving import Serving
from sbps.reconcile.staging import BackgroundStaging, backing
from sbps.reconcile.status import Status
from sbps.target import TargetBackend
from sbps.target.access.policy import OPEN_ATTRIBUTES

log = logging.getLogger(__name__)

#: The field's access (generated ACLs, write-protected, no CHAP); the policy's default.
OPEN_ACCESS_ATTRIBUTES = OPEN_ATTRIBUTES
#: Claims first, then exports: a pass plans again after claiming, at most this often.
ROUNDS = 3


@dataclass(frozen=True)
class Parts:
    """What one reconciler drives; built once by ``sbps.daemon.compose``."""

    catalog: CatalogSource
    claims: Claims
    backend: TargetBackend
    lifecycle: Lifecycle
    desired: DesiredState
    serving: Serving
    gather: Gather
    staging: BackgroundStaging
    levers: ImageLevers
    threads: Threads
    failures: PassFailures


@dataclass
class _Pass:
    """What the steps of one pass found so far (kept when a later step fails)."""

    started: float
    errors: list[str] = field(default_factory=list)
    view: CatalogResult | None = None
    serve: bool | None = None
    target: TargetState | None = None
    inp: PlanInput | None = None
    plan: Plan = field(default_factory=Plan)
    report: Report = field(default_factory=Report)
    sessions: tuple[str, ...] = ()
    dns_registered: bool = False


class Reconciler:
    def __init__(self, parts: Parts, *, iqn: str, interval: float,
                 clock: Callable[[], float]) -> None:
        self.iqn, self.interval, self.clock = iqn, interval, clock
        self.catalog, self.claims, self.backend = parts.catalog, parts.claims, parts.backend
        self.lifecycle, self.desired, self.serving = parts.lifecycle, parts.desired, parts.serving
        self.gather, self.staging, self.threads = parts.gather, parts.staging, parts.threads
        self.failures, self.image_levers = parts.failures, parts.levers
        self.status = Status(iqn=iqn, backend=parts.backend.name)
        self._wake = asyncio.Event()
        self._pass_lock = asyncio.Lock()
        self._pass_done = asyncio.Condition()
        self._counters_lock = asyncio.Lock()
        self._promoted: set[str] = set()

    def trigger(self, reason: str) -> int:
        """Ask for a pass; returns the number of the pass that will include this request."""
        log.debug("pass requested: %s", reason)
        self._wake.set()
        # A pass already running started before this request: the next one includes it.
        return self.status.passes + (2 if self._pass_lock.locked() else 1)

    @property
    def pending(self) -> bool:
        """Whether a pass was asked for since the last one started."""
        return self._wake.is_set()

    async def wait_for_pass(self, number: int) -> Status:
        async with self._pass_done:
            await self._pass_done.wait_for(lambda: self.status.passes >= number)
        return self.status

    async def run(self, first_pass: bool = True) -> None:
        """A pass at start (unless already done), then one per trigger or interval."""
        if first_pass:
            await self.run_pass()
        while True:
            if delay := self.failures.delay():
                await asyncio.sleep(delay)  # the last pass failed with a bug: back off
            else:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation
                # (the daemon's stop) that arrives together with a trigger.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._next_wait()):
                        await self._wake.wait()
            await self.run_pass()

    def _next_wait(self) -> float:
        left = self.serving.seconds_to_disable()
        return min(self.interval, left) if left else self.interval

    # The pass ----------------------------------------------------------------------

    async def run_pass(self) -> Status:
        async with self._pass_lock:
            # Triggers that arrive from here on cause exactly one more pass.
            self._wake.clear()
            try:
                status = await self._pass()
            except Exception as exc:  # a bug fails this pass, not the process
                return await self._failed(exc)
            self.failures.succeeded()
            return status

    async def _failed(self, exc: Exception) -> Status:
        reason = self.failures.record(exc)
        self.status = replace(self.status, passes=self.status.passes + 1,
                              last_pass_at=self.clock(), errors=(reason,), bug=reason)
        await self._notify()
        return self.status

    async def _pass(self) -> Status:
        p, t0 = _Pass(started=self.clock()), time.monotonic()
        p.view = await self.desired.update(p.errors)
        p.serve = await self.serving.decide(p.errors)
        try:
            await self._converge(p, self.desired.images)
            await self._observe(p, self.desired.images)
        except SbpsError as exc:
            p.errors.append(f"target: {exc}")
            log.error("reading or changing the target failed: %s", exc)
        p.dns_registered = await self.serving.sync_dns(p.target, p.errors)
        return await self._publish(p, time.monotonic() - t0)

    async def _converge(self, p: _Pass, desired: tuple[DesiredImage, ...]) -> None:
        """Read, gather, plan, apply; again after claims were made, so the same pass
        exports at the agreed ids (at most ``ROUNDS`` rounds)."""
        effects = LoopEffects(self.threads, self.claims, self.backend, desired=desired,
                              stage=self._start_staging, applied=self.gather.applied)
        for _ in range(ROUNDS):
            p.target = await self.threads.backend(self.backend.read)
            p.inp = await self._plan_input(desired, p.target, p.serve)
            p.plan = plan(p.inp)
            p.report = await apply(p.plan, effects)
            if p.report.failed or not any(isinstance(a, ClaimLun) for a in p.plan.actions):
                return

    async def _observe(self, p: _Pass, desired: tuple[DesiredImage, ...]) -> None:
        """The target after the writes, its sessions, and each image's lifecycle."""
        if p.report.target_writes or p.target is None:
            p.target = await self.threads.backend(self.backend.read)
        p.sessions = await self.threads.backend(self.backend.sessions)
        assert p.inp is not None  # _converge ran at least one round
        ret = retiring(replace(p.inp, target=p.target))
        self.lifecycle.observe(desired, p.target, p.inp.staged, p.inp.claims, ret)
        self._promoted &= {lun.storage_object for lun in p.target.luns}

    async def _publish(self, p: _Pass, seconds: float) -> Status:
        """Replace the snapshot (readers need no lock), log the pass, wake its waiters."""
        ok, target, view = not p.errors and not p.report.failed, p.target, p.view
        assert view is not None  # the first step always gives one
        self.status = replace(
            self.status, passes=self.status.passes + 1, last_pass_at=p.started,
            last_pass_seconds=seconds,
            last_success_at=p.started if ok else self.status.last_success_at,
            ready=self.status.ready or target is not None, gate_open=self.serving.open,
            serving=bool(target is not None and target.tpg_enabled) if p.serve is None
            else p.serve, dns_registered=p.dns_registered,
            degraded=view.degraded + (("catalog_empty",) if self.desired.empty_outage
                                      else ()),
            images=self.lifecycle.status(), problems=view.problems + self.desired.pe_problems,
            notes=p.plan.notes, target=target, last_report=p.report, last_plan=p.plan,
            errors=tuple(p.errors), sessions=p.sessions, bug="")
        level = logging.INFO if p.report.results or p.errors else logging.DEBUG
        log.log(level, "pass %d finished in %.3f s: %d actions, %d failed%s",
                self.status.passes, seconds, len(p.report.results), len(p.report.failed),
                f"; errors: {'; '.join(p.errors)}" if p.errors else "")
        await self._notify()
        return self.status

    async def _notify(self) -> None:
        async with self._pass_done:
            self._pass_done.notify_all()

    async def _plan_input(self, desired: tuple[DesiredImage, ...], target: TargetState,
                          serve: bool | None) -> PlanInput:
        promoted = frozenset(self._promoted)
        return await self.gather.plan_input(desired, target, serve, promoted=promoted)

    def _start_staging(self, image: DesiredImage) -> None:
        self.staging.start(image, in_use=self._in_use,
                           staged=lambda img: self.trigger(f"staged {img.identity.name}"))

    def _in_use(self) -> frozenset[str]:
        return backing(self.status.target, self.staging.stager,
                       excluding=frozenset(self._promoted))

    async def dry_run(self) -> Plan:
        """The plan a pass would apply now, without applying it."""
        target = await self.threads.backend(self.backend.read)
        serve = self.status.serving if self.status.passes else True
        return plan(await self._plan_input(self.desired.images, target, serve))

    async def refresh_counters(self) -> Status:
        """The status with every LUN's counters read after this call (for /metrics and
        /debug/state: a scrape counts every read finished before it). Concurrent callers
        share a reading that started after they asked. Passes read only the counters they
        decide on (retiring and adopted LUNs)."""
        asked = self.clock()
        async with self._counters_lock:
            at = self.status.stats_at
            if at is None or at < asked:
                now = self.clock()
                try:
                    stats = await self.threads.backend(self.backend.stats, None)
                except Exception as exc:  # a scrape must not fail on a bug
                    log.warning("reading the LUN counters failed: %s", exc,
                                exc_info=not isinstance(exc, SbpsError))
                else:
                    self.status = replace(self.status, stats=stats, stats_at=now)
        return self.status

    async def sessions(self) -> tuple[str, ...]:
        return await self.threads.backend(self.backend.sessions)

    async def session_table(self) -> tuple[LoggedIn, ...]:
        """The initiators logged in now, read from the target's own session table."""
        return await self.threads.backend(self.backend.session_table)

    # Commands (sbps.publish.http.deps.Control) -------------------------------------------

    def levers(self) -> Levers:
        return self.image_levers.current()

    def hold(self, key: str) -> Lever:
        return self._command(ImageAction.HOLD, key)

    def release(self, key: str) -> Lever:
        return self._command(ImageAction.RELEASE, key)

    def retire_now(self, key: str) -> Lever:
        return self._command(ImageAction.RETIRE_NOW, key)

    def _command(self, action: ImageAction, key: str) -> Lever:
        self.image_levers.command(action, key, self.status)
        number = self.trigger(f"{action.value} {key} requested")
        return self.image_levers.lever(key, action, number)

    async def promote(self, key: str) -> Lever:
        """Switch a changed PE image to its new content: the claim takes the new etag and
        the old export is removed before the new one is created at the same LUN id."""
        images = await self.catalog.scan()
        img = next((i for i in images.images if key in (i.identity.key, i.identity.name)), None)
        if img is None:
            raise InputError(key, "key", "no desired image has this identity key or name",
                             code="not_found")
        await self.threads.io(self.claims.promote, img.identity, img.source.etag)
        self._promoted.add(img.identity.name)
        self.trigger(f"promoted {img.identity.name}")
        lever = self.image_levers.lever(key, ImageAction.PROMOTE, self.status.passes + 1)
        return replace(lever, etag=img.source.etag)

    def drain(self, on: bool) -> int:
        """Close (or reopen) this worker by hand; returns the pass that acts on it."""
        self.serving.drain(on)
        return self.trigger("drain " + ("on" if on else "off"))

    async def close(self) -> None:
        await self.staging.close()
        self.threads.close()
