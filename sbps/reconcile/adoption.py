"""Adoption of the field agent's LUNs on a worker upgraded to sbps.

Owns the set of adopted backstores and when each may move to the verified cache copy. A
backstore is adopted when its name and serial are those of a desired image (the field
agent derived them the same way) but its file lies outside the cache (the old s3fs path):
its LUN number is kept and claimed (LUN 0 never is: it gets another id), it is not
recreated, and its backing file is switched only while its LUN is idle (never with
``target.adopt_keep_backing``). Also owns when a LUN at another id than its image's claim
(``plan.moving``: the field numbered per worker) has been idle long enough to go. The set is kept in
``<state_dir>/adopted.json`` so an adopted LUN that later retires is still known as ours.
Must not touch the target: it only tells plan() which names are adopted and switchable.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from sbps.core.decode import DecodeError, loads
from sbps.core.model import CacheDir, DesiredImage
from sbps.core.target_state import LunStats, TargetState

log = logging.getLogger(__name__)


class Adoption:
    def __init__(self, state_dir: str, cache_dir: str, *, keep_backing: bool, quiet: float,
                 clock: Callable[[], float]) -> None:
        self.path = Path(state_dir) / "adopted.json"
        self.cache = CacheDir(cache_dir)
        self.keep_backing = keep_backing
        self.quiet = quiet
        self.clock = clock
        self.names: frozenset[str] = self._load()
        self._seen: dict[str, tuple[tuple[int, int], float]] = {}
        self._moving: dict[tuple[int, str], tuple[tuple[int, int], float]] = {}

    def _load(self) -> frozenset[str]:
        try:
            data = loads(self.path.read_bytes(), "state", str(self.path), expect=dict)
        except FileNotFoundError:
            return frozenset()
        except (OSError, DecodeError) as exc:
            log.warning("ignoring unreadable %s (%s); adoption starts afresh", self.path, exc)
            return frozenset()
        names = data.get("adopted")
        return frozenset(n for n in names if isinstance(n, str)) \
            if isinstance(names, list) else frozenset()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".adopted.")
        with os.fdopen(fd, "w") as fh:
            json.dump({"adopted": sorted(self.names)}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def update(self, desired: Iterable[DesiredImage], target: TargetState) -> frozenset[str]:
        """The adopted names, after adopting what matches a desired image now."""
        wanted = {img.identity.name: img for img in desired}
        outside = {so.name: so for so in target.storage_objects
                   if not self.cache.holds(so.path)}
        names = {n for n in self.names if n in outside}
        for name, so in outside.items():
            img = wanted.get(name)
            if img is not None and so.serial == img.identity.serial and name not in names:
                log.info("adopting the field agent's backstore %s (%s) for %s", name, so.path,
                         img.identity.key, extra={"backstore": name})
                names.add(name)
        if frozenset(names) != self.names:
            self.names = frozenset(names)
            self._save()
        return self.names

    def watched(self) -> frozenset[str]:
        """Adopted names whose LUN counters ``idle`` needs (none when backing is kept)."""
        return frozenset() if self.keep_backing else self.names

    def idle(self, target: TargetState, stats: Mapping[int, LunStats]) -> frozenset[str]:
        """Adopted names whose LUN is idle now and may switch backing."""
        if self.keep_backing:
            return frozenset()
        now = self.clock()
        idle = set()
        for lun in target.luns:
            if lun.storage_object not in self.names:
                continue
            s = stats.get(lun.index)
            counters = (s.read_bytes, s.commands - s.tur_commands) if s else (0, 0)
            last = self._seen.get(lun.storage_object)
            if last is None or last[0] != counters:
                self._seen[lun.storage_object] = (counters, now)
            elif now - last[1] >= self.quiet:
                idle.add(lun.storage_object)
        return frozenset(idle)

    def moves_due(self, moving: Mapping[int, str], stats: Mapping[int, LunStats],
                  grace: float) -> frozenset[int]:
        """LUN ids of ``moving`` (an image's other ids beside its claimed one, see
        ``plan.moving``) whose counters have not changed for ``grace``: they may go. The
        time counts from when this process first saw the LUN (a restart waits again)."""
        now = self.clock()
        due: set[int] = set()
        seen: dict[tuple[int, str], tuple[tuple[int, int], float]] = {}
        for index, name in moving.items():
            s = stats.get(index)
            counters = (s.read_bytes, s.commands - s.tur_commands) if s else (0, 0)
            last = self._moving.get((index, name))
            if last is None or last[0] != counters:
                last = (counters, now)
            elif now - last[1] >= grace:
                due.add(index)
            seen[(index, name)] = last
        self._moving = seen
        return frozenset(due)
