"""The reconcile loop: triggers, passes, staging in the background, and the status snapshot.

Owns scheduling (interval, manual and notification triggers, coalesced so that never two
passes run at once and a trigger during a pass causes exactly one more), the pass itself
(catalog -> desired, backend -> actual, plan, apply), the node gate and DNS sequencing, and
the status snapshot, replaced atomically after each pass so readers need no lock.

Never removes on doubt: a degraded catalog keeps the last known good images, and a catalog
that suddenly comes back empty is treated as an outage for ``empty_catalog_passes``.

A bug fails its pass, never the loop or the process (safety invariant 10): anything but
an SbpsError that escapes a pass becomes a failed pass in the status (``Status.bug``,
logged once with its traceback by ``failures.PassFailures``), and the next pass follows
after a backoff. A staging task that fails with a bug fails its image the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from sbps.config import Config
from sbps.core.actions import Action, ClaimLun, Plan, ReleaseClaim
from sbps.core.errors import InputError, SbpsError
from sbps.core.interfaces import Catalog, Claims, Gate, Registrar, Stager
from sbps.core.model import DesiredImage, ImageKind
from sbps.core.target_state import Portal, TargetState
from sbps.reconcile.adoption import Adoption
from sbps.reconcile.apply import Report, apply
from sbps.reconcile.desired import DesiredState
from sbps.reconcile.failures import PassFailures
from sbps.reconcile.lifecycle import Lifecycle
from sbps.reconcile.plan import PlanInput, plan, retiring
from sbps.reconcile.serving import Serving
from sbps.reconcile.status import Status
from sbps.target import TargetBackend
from sbps.target.access.files import AccessSource
from sbps.target.access.policy import OPEN_ATTRIBUTES

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The field's access (generated ACLs, write-protected, no CHAP); the policy's default.
OPEN_ACCESS_ATTRIBUTES = OPEN_ATTRIBUTES


class Reconciler:
    def __init__(self, cfg: Config, iqn: str, *, catalog: Catalog, stager: Stager,
                 claims: Claims, backend: TargetBackend, gate: Gate, registrar: Registrar,
                 access: AccessSource | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.iqn = iqn
        self.catalog, self.stager, self.claims = catalog, stager, claims
        self.backend, self.gate, self.registrar = backend, gate, registrar
        self.clock = clock
        self.lifecycle = Lifecycle(clock, cfg.reconcile.backoff_initial,
                                   cfg.reconcile.backoff_max)
        self.status = Status(iqn=iqn, backend=backend.name)
        self.desired = DesiredState(catalog, claims, self.lifecycle,
                                    empty_catalog_passes=cfg.reconcile.empty_catalog_passes,
                                    on_io=self._on_io)
        self.access = access or AccessSource(cfg.target)
        self._backend_thread = ThreadPoolExecutor(1, thread_name_prefix="sbps-backend")
        self._io = ThreadPoolExecutor(8, thread_name_prefix="sbps-io")
        self._wake = asyncio.Event()
        self._pass_lock = asyncio.Lock()
        self._pass_done = asyncio.Condition()
        self._counters_lock = asyncio.Lock()
        self._staging: dict[str, asyncio.Task[None]] = {}
        self._replace: set[str] = set()
        self.serving = Serving(gate, registrar, drain_delay=self._drain_delay(), clock=clock,
                               drain_file=Path(cfg.reconcile.state_dir) / "drained")
        self.adoption = Adoption(cfg.reconcile.state_dir, cfg.stage.cache_dir,
                                 keep_backing=cfg.target.adopt_keep_backing,
                                 quiet=min(cfg.reconcile.retire_grace, 300.0), clock=clock)
        interval = cfg.reconcile.interval
        self.failures = PassFailures(min(cfg.reconcile.backoff_initial, interval), interval)
        self._portals = frozenset(_portal(p, cfg.target.port) for p in cfg.target.portals) \
            or frozenset({Portal("0.0.0.0", cfg.target.port)})

    # Triggers -----------------------------------------------------------------------

    def trigger(self, reason: str) -> int:
        """Ask for a pass; returns the number of the pass that will include this request."""
        log.debug("pass requested: %s", reason)
        self._wake.set()
        # A pass already running started before this request: the next one includes it.
        return self.status.passes + (2 if self._pass_lock.locked() else 1)

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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._next_wait())
            await self.run_pass()

    def _next_wait(self) -> float:
        wait = self.cfg.reconcile.interval
        left = self.serving.seconds_to_disable()
        return min(wait, left) if left else wait

    def _drain_delay(self) -> float:
        d = self.cfg.reconcile.drain_delay
        return d if d >= 0 else min(float(self.cfg.dns.ttl), 600.0)

    # Helpers to leave the event loop -------------------------------------------------

    async def _on_backend(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._backend_thread, fn, *args)

    async def _on_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

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
        async with self._pass_done:
            self._pass_done.notify_all()
        return self.status

    async def _pass(self) -> Status:
        started = self.clock()
        t0 = time.monotonic()
        errors: list[str] = []
        view = await self.desired.update(errors)
        desired = self.desired.images
        serve = await self.serving.decide(errors)
        target = None
        sessions: tuple[str, ...] = ()
        report = Report()
        last_plan = Plan()
        try:
            for _ in range(3):  # claims first, then exports: at most a few rounds
                target = await self._on_backend(self.backend.read)
                inp = await self._plan_input(desired, target, serve)
                last_plan = plan(inp)
                report = await apply(last_plan, _Ports(self))
                if not any(isinstance(a, ClaimLun) for a in last_plan.actions) or report.failed:
                    break
            if report.target_writes or target is None:
                target = await self._on_backend(self.backend.read)
            sessions = await self._on_backend(self.backend.sessions)
            ret = retiring(replace(inp, target=target))
            self.lifecycle.observe(desired, target, inp.staged, inp.claims, ret)
            exported = {lun.storage_object for lun in target.luns}
            self._replace &= exported
        except SbpsError as exc:
            errors.append(f"target: {exc}")
            log.error("reading or changing the target failed: %s", exc)
        dns_ok = await self.serving.sync_dns(target, errors)
        ok = not errors and not report.failed
        self.status = replace(
            self.status, passes=self.status.passes + 1, last_pass_at=started,
            last_pass_seconds=time.monotonic() - t0,
            last_success_at=started if ok else self.status.last_success_at,
            ready=self.status.ready or target is not None, gate_open=self.serving.open,
            serving=bool(target is not None and target.tpg_enabled) if serve is None
            else serve, dns_registered=dns_ok,
            degraded=view.degraded + (("catalog_empty",) if self.desired.empty_outage
                                      else ()),
            images=self.lifecycle.status(), problems=view.problems + self.desired.pe_problems,
            notes=last_plan.notes, target=target,
            last_report=report, last_plan=last_plan, errors=tuple(errors),
            sessions=sessions, bug="")
        level = logging.INFO if report.results or errors else logging.DEBUG
        log.log(level, "pass %d finished in %.3f s: %d actions, %d failed%s",
                self.status.passes, self.status.last_pass_seconds, len(report.results),
                len(report.failed), f"; errors: {'; '.join(errors)}" if errors else "")
        async with self._pass_done:
            self._pass_done.notify_all()
        return self.status

    async def dry_run(self) -> Plan:
        """The plan a pass would apply now, without applying it."""
        target = await self._on_backend(self.backend.read)
        serve = self.status.serving if self.status.passes else True
        return plan(await self._plan_input(self.desired.images, target, serve))

    async def refresh_counters(self) -> Status:
        """The status with every LUN's I/O counters read after this call was made (for
        /metrics and /debug/state), so a scrape counts every read that finished before it.
        Concurrent callers share one reading: a reading that started after a caller asked
        serves it too. A pass reads only the counters it decides on (retiring and adopted
        LUNs)."""
        asked = self.clock()
        async with self._counters_lock:
            at = self.status.stats_at
            if at is None or at < asked:
                now = self.clock()
                try:
                    stats = await self._on_backend(self.backend.stats, None)
                except Exception as exc:  # a scrape must not fail on a bug
                    log.warning("reading the LUN counters failed: %s", exc,
                                exc_info=not isinstance(exc, SbpsError))
                else:
                    self.status = replace(self.status, stats=stats, stats_at=now)
        return self.status

    def drain(self, on: bool) -> None:
        self.serving.drain(on)

    async def sessions(self) -> tuple[str, ...]:
        return await self._on_backend(self.backend.sessions)

    async def promote(self, key: str) -> DesiredImage:
        """Switch a changed PE image to its new content: the claim takes the new etag and
        the old export is removed before the new one is created at the same LUN id."""
        images = await self.catalog.scan()
        img = next((i for i in images.images
                    if key in (i.identity.key, i.identity.name)), None)
        if img is None:
            raise InputError(key, "key", "no desired image has this identity key or name",
                             code="not_found")
        await self._on_io(self.claims.promote, img.identity, img.source.etag)
        self._replace.add(img.identity.name)
        self.trigger(f"promoted {img.identity.name}")
        return img

    async def _plan_input(self, desired: tuple[DesiredImage, ...], target: TargetState,
                          serve: bool | None) -> PlanInput:
        staged = {}
        for img in desired:
            entry = self.stager.entry(img.identity.digest)
            if entry is not None and entry.etag == img.source.etag:
                staged[img.identity.digest] = entry.path
        claims: dict[str, int] = {}
        candidates: dict[str, int] = {}
        for img in desired:
            c = await self._on_io(self.claims.lookup, img.identity)
            if c is not None:
                claims[img.identity.digest] = c.lun_id
            else:
                candidates[img.identity.digest] = await self._on_io(self.claims.candidate,
                                                                     img.identity)
        # Claims this worker holds for images no longer desired, so retiring releases them.
        for c_digest, lun_id in (await self._on_io(self.claims.held)).items():
            claims.setdefault(c_digest, lun_id)
        adopted = self.adoption.update(desired, target)
        await self._on_backend(self.backend.adopt, adopted)
        # The access policy reads its files (tenant map, CHAP): an unusable one fails the
        # target part of the pass (ConfigError), never loosens or revokes access.
        access, attributes = await self._on_io(self.access.current, desired)
        base = PlanInput(desired=desired, target=target, cache_dir=self.cfg.stage.cache_dir,
                         staged=staged, claims=claims, candidates=candidates,
                         adopted=adopted,
                         replace=frozenset(self._replace),
                         blocked=self.lifecycle.blocked() | frozenset(self._staging),
                         serve=target.tpg_enabled if serve is None else serve,
                         portals=self._portals, attributes=attributes,
                         access=access)
        # Counters only of the LUNs decided on by them: retiring and adopted ones.
        leaving = retiring(base)
        watched = leaving | self.adoption.watched()
        stats = await self._on_backend(self.backend.stats, [
            lun.index for lun in target.luns if lun.storage_object in watched])
        due = self.lifecycle.retire_due(leaving, target, stats,
                                        self.cfg.reconcile.retire_grace,
                                        self.cfg.reconcile.retire_max_wait)
        return replace(base, retire_due=due, switch_backing=self.adoption.idle(target, stats))

    # Background staging -----------------------------------------------------------------

    def start_staging(self, image: DesiredImage) -> None:
        digest = image.identity.digest
        if digest in self._staging:
            return
        self.lifecycle.staging(image)
        self._staging[digest] = asyncio.create_task(self._stage(image),
                                                    name=f"stage-{image.identity.name}")

    async def _stage(self, image: DesiredImage) -> None:
        try:
            await self.stager.stage(image, in_use=self._in_use())
        except SbpsError as exc:
            self.lifecycle.failed(image, exc.code, str(exc))
        except Exception as exc:  # a bug fails this image, not the daemon
            log.error("staging %s failed with a bug: %r", image.identity.name, exc,
                      exc_info=exc, extra={"image": image.identity.name, "code": "bug"})
            self.lifecycle.failed(image, "bug", f"{type(exc).__name__}: {str(exc)[:200]}")
        else:
            self.trigger(f"staged {image.identity.name}")
        finally:
            self._staging.pop(image.identity.digest, None)

    def _in_use(self) -> frozenset[str]:
        """Digests whose cache file backs an exported or retiring LUN."""
        target = self.status.target
        names = {so.name: so.path for so in target.storage_objects} if target else {}
        exported = {lun.storage_object for lun in target.luns} if target else set()
        digests = (self.stager.digest_of(path) for name, path in names.items()
                   if name in exported and name not in self._replace)
        return frozenset(d for d in digests if d is not None)

    async def staging_idle(self) -> None:
        while self._staging:
            await asyncio.gather(*self._staging.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in self._staging.values():
            task.cancel()
        await asyncio.gather(*self._staging.values(), return_exceptions=True)
        self._backend_thread.shutdown(wait=True)
        self._io.shutdown(wait=True)


class _Ports:
    """apply()'s view of the reconciler."""

    def __init__(self, r: Reconciler) -> None:
        self.r = r

    def stage(self, image: DesiredImage) -> None:
        self.r.start_staging(image)

    async def claim(self, action: ClaimLun) -> int:
        pe_etag = None
        img = next((i for i in self.r.desired.images if i.identity == action.identity), None)
        if img is not None and img.kind is ImageKind.PE:
            pe_etag = img.source.etag
        c = await self.r._on_io(lambda: self.r.claims.claim(
            action.identity, preferred=action.lun_id or None, pe_etag=pe_etag))
        return c.lun_id

    async def release(self, action: ReleaseClaim) -> None:
        await self.r._on_io(self.r.claims.release, action.digest, action.lun_id)

    async def target(self, action: Action) -> None:
        await self.r._on_backend(self.r.backend.apply, action)

    async def commit(self) -> None:
        await self.r._on_backend(self.r.backend.commit)


def _portal(text: str, default_port: int) -> Portal:
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return Portal(host.rstrip("]"), int(port) if port else default_port)
    host, sep, port = text.rpartition(":")
    if sep and host and port.isdigit() and ":" not in host:
        return Portal(host, int(port))
    return Portal(text, default_port)
