"""The desired images, pass after pass: the catalog's view, kept on any doubt.

Owns "never remove on doubt" for the catalog side of a pass: a failed catalog scan keeps the
last known good images (degraded ``catalog``), a catalog that suddenly comes back empty is
an outage for ``reconcile.empty_catalog_passes`` passes (status ``catalog_empty``), and a PE
image re-uploaded under the same name keeps serving the version the fleet agreed on until
an admin promotes the new one (problem ``pe_changed``, field failure 4). Must not touch the
target or the claims beyond reading them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sbps.core.errors import SbpsError
from sbps.core.interfaces import CatalogResult, CatalogSource, CatalogView, Claims
from sbps.core.model import DesiredImage, ImageKind, Problem
from sbps.reconcile.lifecycle import Lifecycle

log = logging.getLogger(__name__)


class DesiredState:
    def __init__(self, catalog: CatalogSource, claims: Claims, lifecycle: Lifecycle, *,
                 empty_catalog_passes: int,
                 on_io: Callable[..., Awaitable[Any]]) -> None:
        self.catalog, self.claims, self.lifecycle = catalog, claims, lifecycle
        self.limit = empty_catalog_passes
        self._on_io = on_io
        self.images: tuple[DesiredImage, ...] = ()
        self.empty_outage = False
        """The catalog came back empty and is treated as an outage this pass."""
        self.pe_problems: tuple[Problem, ...] = ()
        self._empty_passes = 0

    async def update(self, errors: list[str]) -> CatalogResult:
        """Scan the catalog and update ``images``; returns this pass's view (its problems
        and degraded sources). A failed scan is appended to ``errors``."""
        view = await self._view(errors)
        self.images = await self._pe_guard(self._from(view))
        return view

    async def _view(self, errors: list[str]) -> CatalogResult:
        try:
            return await self.catalog.scan()
        except SbpsError as exc:
            errors.append(f"catalog: {exc}")
            log.warning("catalog unavailable, keeping the last known images: %s", exc)
            return CatalogView(self.images, (), ("catalog",))

    def _from(self, view: CatalogResult) -> tuple[DesiredImage, ...]:
        self.empty_outage = False
        if view.images or not self.images:
            self._empty_passes = 0
            return view.images
        self._empty_passes += 1
        if self._empty_passes <= self.limit:
            # An outage until proven otherwise: the status says so (issue 7, 15).
            self.empty_outage = True
            log.warning("the catalog came back empty (%d of %d passes); treating it as an "
                        "outage and keeping %d images", self._empty_passes, self.limit,
                        len(self.images))
            return self.images
        return view.images

    async def _pe_guard(self, desired: tuple[DesiredImage, ...]) -> tuple[DesiredImage, ...]:
        """Field failure 4: a PE image re-uploaded under the same name keeps its identity in
        legacy mode, so the version this fleet agreed on (the claim's etag) keeps serving
        until an admin promotes the new one; the change is reported as ``pe_changed``."""
        out: list[DesiredImage] = []
        problems: list[Problem] = []
        for img in desired:
            changed = img.kind is ImageKind.PE and await self._on_io(
                self.claims.pe_changed, img.identity, img.source.etag)
            if not changed:
                out.append(img)
                continue
            old = self.lifecycle.get(img.identity.name)
            problems.append(Problem(img.identity.key, "etag", f"PE object changed to "
                                    f"{img.source.etag}; the agreed version keeps serving "
                                    "until `sbpsctl image promote`", "pe_changed"))
            if old is not None and old.image is not None:
                out.append(old.image)
        for p in problems:
            if p not in self.pe_problems:
                log.warning("%s: %s (pe_changed)", p.obj, p.reason,
                            extra={"code": p.code})
        self.pe_problems = tuple(problems)
        return tuple(out)
