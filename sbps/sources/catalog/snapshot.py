"""The result of one catalog pass, and the log that reports each problem once.

Owns ``CatalogSnapshot`` (frozen, replaced whole every pass) and ``ProblemLog``. Must not
do I/O other than logging.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sbps.core.model import DesiredImage, ImageKind, Problem

log = logging.getLogger(__name__)


def image_key(image: DesiredImage) -> str:
    """The catalog's name for an image: the IMS id of a rootfs, the S3 URL of a PE object."""
    if image.kind is ImageKind.ROOTFS and image.ims_id:
        return image.ims_id
    return str(image.source.url)


@dataclass(frozen=True)
class CatalogSnapshot:
    """What the catalog knows after one pass. LUN ids are not assigned here.

    Contract the reconciler relies on (safety invariant 2, field failure 6):

    - ``images`` holds every image to project, sorted by ``image_key``. An image whose
      source could not be read this pass (IMS down, a manifest GET or a HEAD failed
      transiently, the PE/ listing failed) or whose record or manifest now has a problem
      keeps its *last known good* version here; its key is then in ``stale``. Nothing is
      ever dropped because something could not be read.
    - An image leaves ``images`` only when it is positively gone: its IMS record was
      listed without the label (``unlabelled``), its record is absent from a successful
      IMS listing, or S3 positively says its object is deleted or replaced (``absent``:
      keys that were projected before and are gone now).
    - ``degraded`` names the sources that failed this pass: ``"ims"``, ``"s3:PE/"``,
      ``"manifest:<ims id>"``, ``"object:<key>"``. Empty means a complete pass.
    - ``problems`` are the current problems (each one image skipped or held at its last
      known good version); ``warnings`` are normalised harmless variants.
    - An empty ``images`` with an empty ``degraded`` is a real, complete answer; the
      reconciler applies its own empty-catalog threshold to it.
    """

    images: tuple[DesiredImage, ...] = ()
    problems: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    degraded: tuple[str, ...] = ()
    stale: frozenset[str] = frozenset()
    unlabelled: frozenset[str] = frozenset()
    absent: frozenset[str] = frozenset()
    ims_ok: bool = False
    pe_ok: bool = False
    refreshed: bool = False
    scanned_at: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.degraded

    def by_key(self) -> dict[str, DesiredImage]:
        return {image_key(i): i for i in self.images}


class ProblemLog:
    """Keeps the current problems and logs each one once: when it appears, when it goes."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger
        self._problems: frozenset[Problem] = frozenset()
        self._warnings: frozenset[Problem] = frozenset()

    @property
    def problems(self) -> tuple[Problem, ...]:
        return _sorted(self._problems)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return _sorted(self._warnings)

    def update(self, problems: Iterable[Problem], warnings: Iterable[Problem]) -> None:
        current, notes = frozenset(problems), frozenset(warnings)
        for p in _sorted(current - self._problems):
            self._log.warning("image skipped: %s: %s: %s", p.obj, p.field, p.reason,
                              extra={"image": p.obj, "field": p.field, "code": p.code})
        for p in _sorted(self._problems - current):
            self._log.info("problem resolved: %s: %s: %s", p.obj, p.field, p.reason,
                           extra={"image": p.obj, "field": p.field, "code": p.code})
        for p in _sorted(notes - self._warnings):
            self._log.warning("accepted with normalisation: %s: %s: %s", p.obj, p.field,
                              p.reason, extra={"image": p.obj, "field": p.field,
                                               "code": p.code})
        self._problems, self._warnings = current, notes


def _sorted(problems: Iterable[Problem]) -> tuple[Problem, ...]:
    return tuple(sorted(problems, key=lambda p: (p.obj, p.field, p.code, p.reason)))
