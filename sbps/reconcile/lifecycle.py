"""Image lifecycle bookkeeping: states, failures with backoff, and retirement timing.

Owns the per-image record (``discovered -> staging -> staged -> exported -> retiring ->
removed``, plus ``failed(reason)``), exponential backoff of failed images, and the read
counters that decide when a retiring LUN is idle. Each transition is logged once. Must not
do I/O: the reconciler feeds it observations and a clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sbps.core.model import DesiredImage, ImageState
from sbps.core.target_state import LunStats, TargetState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageStatus:
    """What the status snapshot, the catalog API and metrics show for one image version."""

    name: str
    state: ImageState
    since: float
    reason: str = ""
    image: DesiredImage | None = None
    lun_id: int | None = None
    attempts: int = 0
    retry_at: float | None = None
    held: bool = False
    aliases: tuple[DesiredImage, ...] = ()
    """Other records of the same image version (another IMS id on the same rootfs and
    etag): one backstore and LUN, but each record keeps its own catalog entry. ``image``
    is the first record in catalog order (the lowest IMS id); the LUN takes its name."""


@dataclass
class _Retire:
    since: float
    last_change: float
    counters: tuple[int, int] | None = None


class Lifecycle:
    def __init__(self, clock: Callable[[], float], backoff_initial: float,
                 backoff_max: float) -> None:
        self._clock = clock
        self._initial = backoff_initial
        self._max = backoff_max
        self._status: dict[str, ImageStatus] = {}
        self._retire: dict[str, _Retire] = {}
        self.held: set[str] = set()
        self.forced: set[str] = set()

    def status(self) -> tuple[ImageStatus, ...]:
        return tuple(sorted(self._status.values(), key=lambda s: s.name))

    def get(self, name: str) -> ImageStatus | None:
        return self._status.get(name)

    def _set(self, name: str, state: ImageState, reason: str = "", **kw: Any) -> None:
        old = self._status.get(name)
        now = self._clock()
        if old is None:
            new = ImageStatus(name, state, now, reason, **kw)
        elif old.state is not state or (state is ImageState.FAILED and old.reason != reason):
            new = replace(old, state=state, since=now, reason=reason, **kw)
        else:
            self._status[name] = replace(old, **kw)
            return
        self._status[name] = replace(new, held=name in self.held)
        level = logging.WARNING if state is ImageState.FAILED else logging.INFO
        log.log(level, "image %s: %s%s", name, state.value, f" ({reason})" if reason else "",
                extra={"backstore": name, "state": state.value})

    def blocked(self) -> frozenset[str]:
        """Digests not to stage now: staging, or failed and still backing off."""
        now = self._clock()
        out = set()
        for s in self._status.values():
            if s.image is None:
                continue
            if s.state is ImageState.STAGING or (
                    s.state is ImageState.FAILED and s.retry_at is not None and s.retry_at > now):
                out.add(s.image.identity.digest)
        return frozenset(out)

    def staging(self, image: DesiredImage) -> None:
        self._set(image.identity.name, ImageState.STAGING, "downloading and verifying",
                  image=image)

    def failed(self, image: DesiredImage, code: str, message: str) -> None:
        name = image.identity.name
        old = self._status.get(name)
        attempts = (old.attempts if old else 0) + 1
        delay = min(self._max, self._initial * 2 ** (attempts - 1))
        self._set(name, ImageState.FAILED, f"{code}: {message}", image=image,
                  attempts=attempts, retry_at=self._clock() + delay)

    def observe(self, desired: Iterable[DesiredImage], target: TargetState,
                staged: Mapping[str, str], claims: Mapping[str, int],
                retiring: Iterable[str]) -> None:
        """Derive each image's state from what the pass saw."""
        exported = {lun.storage_object: lun.index for lun in target.luns}
        wanted = set()
        aliases: dict[str, list[DesiredImage]] = {}
        for img in desired:
            name = img.identity.name
            if name in wanted:  # plan() exports the first record; this one shares it
                aliases.setdefault(name, []).append(img)
                continue
            wanted.add(name)
            lun_id = claims.get(img.identity.digest)
            old = self._status.get(name)
            if name in exported:
                self._set(name, ImageState.EXPORTED, image=img, lun_id=exported[name],
                          attempts=0, retry_at=None)
            elif img.identity.digest in staged:
                self._set(name, ImageState.STAGED, image=img, lun_id=lun_id)
            elif old is not None and old.state in (ImageState.STAGING, ImageState.FAILED):
                self._status[name] = replace(old, image=img, lun_id=lun_id)
            else:
                self._set(name, ImageState.DISCOVERED, image=img, lun_id=lun_id)
            self._status[name] = replace(self._status[name], aliases=())
        for name, extra in aliases.items():
            self._status[name] = replace(self._status[name], aliases=tuple(extra))
        for name in retiring:
            wanted.add(name)
            self._set(name, ImageState.RETIRING, "no longer desired; waiting until idle",
                      lun_id=exported.get(name))
        for name in list(self._status):
            if name not in wanted:
                if name not in exported:
                    self._set(name, ImageState.REMOVED, "LUN removed")
                del self._status[name]
                self._retire.pop(name, None)
                self.forced.discard(name)

    def retire_due(self, retiring: Iterable[str], target: TargetState,
                   stats: Mapping[int, LunStats], grace: float,
                   max_wait: float) -> frozenset[str]:
        """Which retiring backstores may go now: idle for ``grace`` (reads and non-TUR
        commands unchanged), forced by an admin, or retiring for longer than ``max_wait``.
        A held image never goes."""
        now = self._clock()
        luns: dict[str, list[int]] = {}
        for lun in target.luns:
            luns.setdefault(lun.storage_object, []).append(lun.index)
        due = set()
        current = set(retiring)
        for name in list(self._retire):
            if name not in current:
                del self._retire[name]
        for name in current:
            counters = _counters(luns.get(name, []), stats)
            r = self._retire.get(name)
            if r is None:
                r = self._retire[name] = _Retire(since=now, last_change=now, counters=counters)
            elif counters != r.counters:
                r.counters, r.last_change = counters, now
            if name in self.held:
                continue
            if name in self.forced or now - r.last_change >= grace:
                due.add(name)
            elif now - r.since >= max_wait:
                log.warning("retiring LUN %s is still read after the maximum wait; removing",
                            name, extra={"backstore": name})
                due.add(name)
        return frozenset(due)


def _counters(indexes: list[int], stats: Mapping[int, LunStats]) -> tuple[int, int]:
    """Bytes read and commands other than the path checker's TEST UNIT READY."""
    read = sum(stats[i].read_bytes for i in indexes if i in stats)
    cmds = sum(stats[i].commands - stats[i].tur_commands for i in indexes if i in stats)
    return read, cmds
