"""Staging in the background: one task per image being downloaded and verified.

Owns the running staging tasks: at most one per digest, each named after its image, each
failure recorded on the image's lifecycle (a bug fails that image, never the daemon), and
a callback when an image is staged so the loop runs a pass for it. Must not decide what
to stage (plan() does) and must not touch the target.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from sbps.core.errors import SbpsError
from sbps.core.interfaces import ImageCache
from sbps.core.model import DesiredImage
from sbps.core.target_state import TargetState
from sbps.reconcile.lifecycle import Lifecycle

log = logging.getLogger(__name__)


class BackgroundStaging:
    def __init__(self, stager: ImageCache, lifecycle: Lifecycle) -> None:
        self.stager, self.lifecycle = stager, lifecycle
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def running(self) -> frozenset[str]:
        """Digests being staged now."""
        return frozenset(self._tasks)

    def start(self, image: DesiredImage, *, in_use: Callable[[], Collection[str]],
              staged: Callable[[DesiredImage], object]) -> None:
        """Stage ``image`` unless it is staging already; the stager never evicts a digest in
        ``in_use()`` (asked when the download starts); ``staged(image)`` is called once it
        is verified in the cache."""
        digest = image.identity.digest
        if digest in self._tasks:
            return
        self.lifecycle.staging(image)
        self._tasks[digest] = asyncio.create_task(self._stage(image, in_use, staged),
                                                  name=f"stage-{image.identity.name}")

    async def _stage(self, image: DesiredImage, in_use: Callable[[], Collection[str]],
                     staged: Callable[[DesiredImage], object]) -> None:
        try:
            await self.stager.stage(image, in_use=in_use())
        except SbpsError as exc:
            self.lifecycle.failed(image, exc.code, str(exc))
        except Exception as exc:  # a bug fails this image, not the daemon
            log.error("staging %s failed with a bug: %r", image.identity.name, exc,
                      exc_info=exc, extra={"image": image.identity.name, "code": "bug"})
            self.lifecycle.failed(image, "bug", f"{type(exc).__name__}: {str(exc)[:200]}")
        else:
            staged(image)
        finally:
            self._tasks.pop(image.identity.digest, None)

    async def idle(self) -> None:
        """Wait until no staging task runs (those started meanwhile included)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)


def backing(target: TargetState | None, stager: ImageCache, *,
            excluding: frozenset[str]) -> frozenset[str]:
    """Digests whose cache file backs an exported or retiring LUN of ``target`` (the
    backstores named in ``excluding`` aside): staging must not evict them. The stager says
    which digest a backing path holds (no file-name parsing here)."""
    if target is None:
        return frozenset()
    names = {so.name: so.path for so in target.storage_objects}
    exported = {lun.storage_object for lun in target.luns}
    digests = (stager.digest_of(path) for name, path in names.items()
               if name in exported and name not in excluding)
    return frozenset(d for d in digests if d is not None)
