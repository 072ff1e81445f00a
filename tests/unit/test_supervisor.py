"""Supervised tasks: a long-lived task that dies or ends sets ``failed``; one-shots may end."""

from __future__ import annotations

import asyncio

from sbps.daemon.supervisor import Supervisor


async def test_a_dying_task_fails_the_daemon() -> None:
    sup = Supervisor()

    async def boom() -> None:
        raise RuntimeError("disk on fire")

    sup.start("reconciler", boom())
    await asyncio.wait_for(sup.failed.wait(), 5)
    assert "reconciler" in sup.reason and "disk on fire" in sup.reason
    assert await sup.stop(1)


async def test_a_long_lived_task_that_returns_is_a_failure_but_a_oneshot_is_not() -> None:
    sup = Supervisor()

    async def done() -> None:
        return None

    sup.start("rehash", done(), oneshot=True)
    await asyncio.sleep(0.05)
    assert not sup.failed.is_set()
    sup.start("http", done())
    await asyncio.wait_for(sup.failed.wait(), 5)
    assert "ended unexpectedly" in sup.reason


async def test_stop_cancels_within_the_deadline() -> None:
    sup = Supervisor()
    sup.start("loop", asyncio.sleep(3600))
    assert await sup.stop(2)
    assert [t["state"] for t in sup.describe()] == ["cancelled"]


async def test_a_task_with_restart_is_restarted_and_does_not_fail_the_daemon() -> None:
    sup = Supervisor()
    runs: list[int] = []
    again = asyncio.Event()

    async def flaky() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("planted bug")
        again.set()
        await asyncio.sleep(3600)

    sup.start("reconciler", flaky(), restart=flaky)
    await asyncio.wait_for(again.wait(), 10)
    assert not sup.failed.is_set() and sup.restarts["reconciler"] == 1
    assert sup.describe() == [{"name": "reconciler", "state": "running", "restarts": 1}]
    assert await sup.stop(2)
