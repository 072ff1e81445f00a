"""The reconcile loop in process: the real Reconciler, wired as the daemon wires it
(``compose.make_reconciler``), driving in-memory fakes of its components and a fake clock
(tests/fixtures/loop_fakes.py). What only a process shows (signals, sd_notify, the HTTP
port, real targets) stays in tests/e2e."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sbps.core.errors import InputError, UpstreamTemporaryError, VerificationError
from sbps.core.model import DesiredImage, ImageState
from sbps.reconcile.loop import Reconciler
from tests.fixtures.http_api import rootfs
from tests.fixtures.loop_fakes import World, make_world

A, B = rootfs("aaaa-1"), rootfs("bbbb-2")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = make_world(tmp_path, (A, B), retire_grace=600.0, backoff_initial=30.0)
    yield w
    await w.close()


async def converge(r: Reconciler) -> None:
    """Passes until staging is done and a pass changes nothing."""
    for _ in range(5):
        status = await r.run_pass()
        await r.staging.idle()
        if not status.last_report.results and not r.staging.running():
            return
    raise AssertionError("did not converge in 5 passes")


def state(r: Reconciler, img: DesiredImage) -> ImageState:
    [s] = [s for s in r.status.images if s.name == img.identity.name]
    return s.state


def exported(w: World) -> dict[str, int]:
    return {name: index for index, name in w.backend.luns.items()}


async def test_a_labelled_image_is_staged_then_exported(world: World) -> None:
    r = world.reconciler()
    first = await r.run_pass()
    # Claims first (round 1), then staging (round 2: the status reports the last round);
    # nothing is exported unstaged.
    assert [w.split()[0] for w in world.claims.writes] == ["claim", "claim"]
    assert [res.action.kind for res in first.last_report.results] == ["StageImage"] * 2
    assert world.backend.exists and not world.backend.luns
    assert state(r, A) is ImageState.STAGING
    await r.staging.idle()
    assert r.pending, "a staged image asks for a pass"
    second = await r.run_pass()
    assert state(r, A) is ImageState.EXPORTED and state(r, B) is ImageState.EXPORTED
    held = world.claims.held()
    assert exported(world) == {A.identity.name: held[A.identity.digest],
                               B.identity.name: held[B.identity.digest]}
    assert world.backend.enabled and world.backend.commits == 2
    assert second.ready and second.serving and second.dns_registered and not second.errors
    assert world.registrar.present
    assert (await r.run_pass()).last_report.results == ()


async def test_a_catalog_outage_never_removes_anything(world: World) -> None:
    r = world.reconciler()
    await converge(r)
    before = exported(world)
    writes = len(world.backend.writes)
    world.clock.advance(7 * 86400)  # past every grace: nothing may be removed all the same
    world.catalog.outage = UpstreamTemporaryError("IMS: 503", code="upstream_unavailable")
    for _ in range(3):
        status = await r.run_pass()
        assert "catalog" in status.degraded and status.errors
    world.catalog.outage = None
    world.catalog.images = ()  # suddenly empty: an outage too, for empty_catalog_passes
    for _ in range(3):
        status = await r.run_pass()
        assert "catalog_empty" in status.degraded
        world.clock.advance(3600)
    assert len(world.backend.writes) == writes and exported(world) == before
    assert state(r, A) is ImageState.EXPORTED
    # Negative control: an image positively unlabelled starts retiring.
    world.catalog.images = (B,)
    await r.run_pass()
    assert state(r, A) is ImageState.RETIRING


async def test_a_restart_on_a_converged_target_writes_nothing(world: World) -> None:
    await converge(world.reconciler())
    before = exported(world)
    writes, claims, commits = (len(world.backend.writes), len(world.claims.writes),
                               world.backend.commits)
    again = world.reconciler()  # a new process on the same target, bucket and cache
    status = await again.run_pass()
    assert status.last_report.results == () and not status.errors
    assert len(world.backend.writes) == writes and world.backend.commits == commits
    assert len(world.claims.writes) == claims and exported(world) == before
    assert state(again, A) is ImageState.EXPORTED
    # Negative control: a target that lost a LUN behind our back is repaired.
    del world.backend.luns[before[A.identity.name]]
    await again.run_pass()
    assert exported(world) == before and len(world.backend.writes) == writes + 1


async def test_retire_waits_for_idle_counters(world: World) -> None:
    r = world.reconciler()
    await converge(r)
    lun = exported(world)[A.identity.name]
    world.catalog.images = (B,)
    await r.run_pass()
    assert state(r, A) is ImageState.RETIRING
    for _ in range(3):  # read within every grace period: stays
        world.clock.advance(500)
        world.backend.read_from(lun, 4096)
        await r.run_pass()
        world.clock.advance(500)
        await r.run_pass()
        assert exported(world)[A.identity.name] == lun
    world.clock.advance(200)  # 700 s since the last read, grace 600: goes
    status = await r.run_pass()
    assert A.identity.name not in exported(world) and B.identity.name in exported(world)
    assert [res.action.kind for res in status.last_report.results] == [
        "DeleteLun", "DeleteStorageObject", "ReleaseClaim"]
    assert A.identity.digest not in world.claims.held()


async def test_hold_keeps_and_retire_now_forces(world: World) -> None:
    r = world.reconciler()
    await converge(r)
    world.catalog.images = (B,)
    await r.run_pass()
    with pytest.raises(InputError) as refused:
        r.retire_now(B.identity.name)
    assert refused.value.code == "conflict"  # exported, not retiring
    with pytest.raises(InputError) as refused:
        r.hold("0123456789abcde")
    assert refused.value.code == "not_found"
    lever = r.hold(A.identity.name)
    assert lever.held and lever.pass_number == r.status.passes + 1 and r.pending
    with pytest.raises(InputError):
        r.retire_now(A.identity.name)  # held: release first
    world.clock.advance(3600)  # idle past the grace, but held
    await r.run_pass()
    assert A.identity.name in exported(world)
    r.release(A.identity.name)
    assert r.retire_now(A.identity.name).forced
    await r.run_pass()
    assert A.identity.name not in exported(world)
    assert r.levers().forced == frozenset()  # forgotten once removed


async def test_a_failed_download_backs_off_on_the_clock(world: World) -> None:
    world.stager.fail[A.identity.digest] = VerificationError("md5 mismatch")
    r = world.reconciler()
    await r.run_pass()
    await r.staging.idle()
    await r.run_pass()
    assert state(r, A) is ImageState.FAILED and state(r, B) is ImageState.EXPORTED
    del world.stager.fail[A.identity.digest]
    await r.run_pass()
    assert world.stager.staged.count(A.identity.digest) == 0, "backing off: not retried"
    world.clock.advance(31)
    await r.run_pass()
    await r.staging.idle()
    await r.run_pass()
    assert state(r, A) is ImageState.EXPORTED


@pytest.mark.parametrize("step", ["catalog", "gate", "backend"])
async def test_a_bug_in_a_step_fails_that_pass_only(world: World, step: str) -> None:
    r = world.reconciler()
    await converge(r)
    before, writes = exported(world), len(world.backend.writes)
    passes = r.status.passes
    bug = KeyError("a bug")
    fakes = {"catalog": world.catalog, "gate": world.gate, "backend": world.backend}
    fakes[step].bug = bug
    status = await r.run_pass()
    assert status.passes == passes + 1 and "KeyError" in status.bug
    assert r.failures.delay() > 0, "the next pass backs off"
    assert exported(world) == before and len(world.backend.writes) == writes
    assert state(r, A) is ImageState.EXPORTED  # the snapshot of the pass before
    fakes[step].bug = None
    status = await r.run_pass()
    assert status.bug == "" and not status.errors and r.failures.delay() == 0


async def test_triggers_during_a_pass_cause_exactly_one_more_pass(world: World) -> None:
    world.catalog.images = ()  # no staging, whose end would trigger passes of its own
    r = world.reconciler()
    world.catalog.paused = asyncio.Event()
    loop = asyncio.create_task(r.run())
    try:
        await world.catalog.entered.wait()  # pass 1 is running
        world.catalog.entered.clear()
        assert not r.pending
        assert [r.trigger(f"t{n}") for n in range(3)] == [2, 2, 2]
        assert r.pending
        world.catalog.paused.set()
        world.catalog.paused = asyncio.Event()
        await world.catalog.entered.wait()  # pass 2 started: it takes all three
        assert r.status.passes == 1 and not r.pending
        world.catalog.paused.set()
        world.catalog.paused = None
        await r.wait_for_pass(2)
        assert not r.pending and world.catalog.scans == 2
        assert r.trigger("after") == 3  # nothing ran since: the next request is pass 3
    finally:
        # Stopping at the moment a trigger arrives stops (Python 3.11's wait_for would
        # have lost this cancellation and gone on with pass 3).
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
