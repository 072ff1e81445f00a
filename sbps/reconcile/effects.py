"""Where the loop's blocking work runs, and apply()'s hands: the backend thread, the I/O
pool, and the ``apply.Effects`` implementation over them.

Owns two executors (one thread for the target backend, which must see one writer at a
time; a small pool for the claims and the journal) and ``LoopEffects``, which runs each kind of
action through the component that owns it. Must not decide anything: what to do is plan(),
in what order and with what isolation is apply().
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sbps.core.actions import Action, ClaimLun, ReleaseClaim
from sbps.core.interfaces import Claims
from sbps.core.model import DesiredImage, ImageKind
from sbps.target import TargetBackend

T = TypeVar("T")


class Threads:
    """The backend's one thread and the I/O pool; blocking calls leave the event loop here."""

    def __init__(self, io_workers: int = 8) -> None:
        self._backend = ThreadPoolExecutor(1, thread_name_prefix="sbps-backend")
        self._io = ThreadPoolExecutor(io_workers, thread_name_prefix="sbps-io")

    async def backend(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._backend, fn, *args)

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def close(self) -> None:
        self._backend.shutdown(wait=True)
        self._io.shutdown(wait=True)


class LoopEffects:
    """apply()'s view of the world (``sbps.reconcile.apply.Effects``): staging starts in the
    background, claims run in the I/O pool, target actions on the backend's thread."""

    def __init__(self, threads: Threads, claims: Claims, backend: TargetBackend, *,
                 desired: tuple[DesiredImage, ...],
                 stage: Callable[[DesiredImage], None],
                 applied: Callable[[Action], None]) -> None:
        self.threads, self.claims, self.backend = threads, claims, backend
        self.desired = desired
        self._stage = stage
        self._applied = applied

    def stage(self, image: DesiredImage) -> None:
        self._stage(image)

    async def claim(self, action: ClaimLun) -> int:
        img = next((i for i in self.desired if i.identity == action.identity), None)
        # A PE claim records the etag this fleet agreed on (field failure 4).
        pe_etag = img.source.etag if img is not None and img.kind is ImageKind.PE else None
        c = await self.threads.io(lambda: self.claims.claim(
            action.identity, preferred=action.lun_id or None, pe_etag=pe_etag))
        return c.lun_id

    async def release(self, action: ReleaseClaim) -> None:
        await self.threads.io(self.claims.release, action.digest, action.lun_id)

    async def target(self, action: Action) -> None:
        await self.threads.backend(self.backend.apply, action)
        await self.threads.io(self._applied, action)

    async def commit(self) -> None:
        await self.threads.backend(self.backend.commit)
