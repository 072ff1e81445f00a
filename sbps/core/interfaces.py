"""The interfaces the reconciler drives: catalog, stager, claims, gate and DNS registrar.

Owns these Protocols and the small value types they exchange, so the reconciler depends on
shapes rather than on implementations (and tests can drive it with the real components in
any combination). Must not contain behaviour beyond the ``off`` registrar and the
``always`` gate, which are complete implementations of doing nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from sbps.core.model import CacheEntry, Claim, DesiredImage, Identity, Problem


@dataclass(frozen=True)
class CatalogView:
    """One pass's view of the catalog. ``images`` keeps the last known good version of an
    image whose source failed this pass (named in ``degraded``); only images positively
    unlabelled or deleted are absent."""

    images: tuple[DesiredImage, ...]
    problems: tuple[Problem, ...] = ()
    degraded: tuple[str, ...] = ()


class CatalogResult(Protocol):
    """What the reconciler reads of a catalog pass (``sbps.sources.catalog.CatalogSnapshot``)."""

    @property
    def images(self) -> tuple[DesiredImage, ...]: ...

    @property
    def problems(self) -> tuple[Problem, ...]: ...

    @property
    def degraded(self) -> tuple[str, ...]: ...


class CatalogSource(Protocol):
    async def scan(self) -> CatalogResult: ...


class ImageCache(Protocol):
    async def stage(self, image: DesiredImage, *, in_use: Collection[str] = ()) -> CacheEntry:
        """Download and verify; never evicts a digest in ``in_use``."""
        ...

    def entry(self, digest: str) -> CacheEntry | None: ...

    def digest_of(self, path: str) -> str | None:
        """The digest of the cache file that backs a backstore at ``path``, or None."""
        ...


class Claims(Protocol):
    """Blocking; the reconciler calls it in an executor."""

    def lookup(self, identity: Identity) -> Claim | None: ...

    def claim(self, identity: Identity, *, preferred: int | None = None,
              pe_etag: str | None = None) -> Claim: ...

    def release(self, digest: str, lun_id: int) -> None: ...

    def pe_changed(self, identity: Identity, etag: str) -> bool:
        """Whether a PE claim records another etag than ``etag`` (journal only)."""
        ...

    def promote(self, identity: Identity, etag: str) -> Claim:
        """Make ``etag`` the agreed version of a PE identity."""
        ...

    def held(self) -> dict[str, int]:
        """digest -> LUN id of every claim this worker holds (from its journal)."""
        ...

    def candidate(self, identity: Identity) -> int: ...


class Gate(Protocol):
    name: str

    async def is_open(self) -> bool: ...


class Registrar(Protocol):
    """DNS records of this worker. ``ensure(True)`` registers (and repairs drift),
    ``ensure(False)`` withdraws; both touch only this worker's own records."""

    name: str

    async def ensure(self, present: bool) -> None: ...


class AlwaysOpen:
    name = "always"

    async def is_open(self) -> bool:
        return True


class NoDns:
    name = "off"

    async def ensure(self, present: bool) -> None:
        return None
