"""The field's four ``iscsi_*`` metrics as a node-exporter textfile, where the site reads them.

Owns the file ``http.textfile_path`` and its state. In the field the four metrics reach
Prometheus through node-exporter on port 9100: an ``iscsi-metrics`` DaemonSet on the nodes
labelled ``iscsi=sbps`` writes them into ``/var/lib/node_exporter`` (Cray-HPE
cray-sysmgmt-health, ``templates/iscsi/iscsi_daemon.yaml``), which node-exporter reads
(``values.yaml``: ``--collector.textfile.directory=/var/lib/node_exporter``), and the
site's ISCSI dashboard selects ``iscsi_read_rate{instance="<node>:9100", lun=~"lun.*"}``
(``dashboards_json/iscsi/iscsi.json``). sbps writes the same names there, with ``lun``
as configfs names it (``lun_<id>``), after passes and at most every
``http.textfile_interval``: a temporary file in the same directory (node-exporter reads
only ``*.prom``), mode 0644, renamed over the old one, so a reader never sees a partial
file. The file stays on stop, as the field's did (its pod leaves the host file behind).

One writer per name: two files with the same series make node-exporter fail the textfile
scrape. While another ``*.prom`` file in the directory carries one of the four names (the
field's DaemonSet still deployed), sbps removes its own file and reports ``yielded``
(``blocked`` once that file has not changed for ``STALE`` seconds: its writer is gone and
node-exporter serves frozen numbers; an operator removes it). Must not touch any file but
its own, and must not block the event loop (file work runs in an executor).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sbps.publish.metrics import COMPAT_NAMES
from sbps.reconcile.status import Status

log = logging.getLogger(__name__)

#: A foreign file with the field's names unchanged this long: its writer has stopped.
STALE = 600.0
#: The most of a foreign ``*.prom`` file read to look for the field's names.
MAX_PEEK = 1 << 20
_NAMES = re.compile(rb"^(?:# (?:HELP|TYPE) )?(?:" + b"|".join(
    n.encode() for n in COMPAT_NAMES) + rb")\b", re.MULTILINE)


class Passes(Protocol):
    """What the writer needs of the reconciler."""

    @property
    def status(self) -> Status: ...

    async def wait_for_pass(self, number: int) -> Status: ...

    async def refresh_counters(self) -> Status: ...


class State(enum.StrEnum):
    OFF = "off"              # http.textfile_path is empty
    PENDING = "pending"      # nothing written yet
    WRITTEN = "written"
    YIELDED = "yielded"      # another file carries the names, and is being updated
    BLOCKED = "blocked"      # another file carries the names, and is stale
    NO_DIRECTORY = "no_directory"  # node-exporter's directory does not exist here
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    state: State
    other: str = ""  # the foreign file, when yielded or blocked
    error: str = ""


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def render(families: Sequence[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def foreign_writer(directory: str, own: str, now: float) -> tuple[str, bool] | None:
    """Another ``*.prom`` file of ``directory`` that carries one of the field's names, and
    whether it is stale; None when there is none."""
    found: tuple[str, bool] | None = None
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.name.endswith(".prom") or entry.path == own:
                continue
            try:
                if not entry.is_file():
                    continue
                with open(entry.path, "rb") as fh:
                    head = fh.read(MAX_PEEK)
                mtime = entry.stat().st_mtime
            except OSError:
                continue
            if _NAMES.search(head):
                stale = now - mtime >= STALE
                if found is None or found[1]:  # prefer a live writer in the report
                    found = (entry.path, stale)
    return found


def write_atomically(path: str, body: bytes) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)  # no secret here; node-exporter may run as nobody
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class TextfileWriter(Collector):
    """Writes ``families()`` to ``path`` after passes; a Collector of its own state."""

    def __init__(self, path: str, interval: float, families: Callable[[], Sequence[Metric]],
                 *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self.interval = interval
        self._families = families
        self._clock = clock
        self._wall = wall
        self.last = Outcome(State.OFF if not path else State.PENDING)
        self.written_at = 0.0  # wall time of the last write

    def write_once(self) -> Outcome:
        """One refresh: write, or yield to another writer. Blocking; never raises."""
        directory = os.path.dirname(self.path) or "."
        try:
            if not os.path.isdir(directory):
                return self._report(Outcome(State.NO_DIRECTORY))
            other = foreign_writer(directory, self.path, self._wall())
            if other is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)  # never two files with the same series
                return self._report(Outcome(State.BLOCKED if other[1] else State.YIELDED,
                                            other=other[0]))
            write_atomically(self.path, render(self._families()))
        except OSError as exc:
            return self._report(Outcome(State.FAILED, error=f"{exc.strerror or exc}"))
        self.written_at = self._wall()
        return self._report(Outcome(State.WRITTEN))

    def _report(self, outcome: Outcome) -> Outcome:
        before, self.last = self.last, outcome
        if (before.state, before.other) == (outcome.state, outcome.other):
            return outcome
        where = {"path": self.path}
        if outcome.state is State.WRITTEN:
            log.info("node-exporter textfile written: %s", self.path, extra=where)
        elif outcome.state is State.NO_DIRECTORY:
            log.info("node-exporter textfile not written: %s does not exist (no "
                     "node-exporter textfile directory here)", os.path.dirname(self.path),
                     extra=where)
        elif outcome.state is State.YIELDED:
            log.warning("node-exporter textfile not written: %s already carries the iscsi_* "
                        "metrics (the field's iscsi-metrics DaemonSet); it serves them",
                        outcome.other, extra=where)
        elif outcome.state is State.BLOCKED:
            log.warning("node-exporter textfile not written: %s carries the iscsi_* metrics "
                        "but has not changed for %d s; remove it (and the iscsi-metrics "
                        "DaemonSet) so that sbps writes them", outcome.other, int(STALE),
                        extra=where)
        elif outcome.state is State.FAILED:
            log.warning("node-exporter textfile %s not written: %s", self.path,
                        outcome.error, extra=where)
        return outcome

    async def run(self, reconciler: Passes) -> None:
        """Refresh after every pass, at most every ``interval``; runs until cancelled."""
        if not self.path:
            await asyncio.Event().wait()  # off: a supervised task still runs until stop
        loop = asyncio.get_running_loop()
        seen = reconciler.status.passes
        last: float | None = None
        while True:
            if seen == 0 or last is not None:
                await reconciler.wait_for_pass(seen + 1)
            if last is not None:
                await asyncio.sleep(max(0.0, last + self.interval - self._clock()))
            seen = reconciler.status.passes
            last = self._clock()
            await reconciler.refresh_counters()  # a pass reads only some LUNs' counters
            await loop.run_in_executor(None, self.write_once)

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "sbps_textfile_state", "The node-exporter textfile of the field's iscsi_* "
            "metrics (http.textfile_path): 1 for the current state.", labels=["state"])
        for member in State:
            state.add_metric([member.value], int(member is self.last.state))
        yield state
        yield GaugeMetricFamily("sbps_textfile_written_timestamp_seconds", "When the "
                                "node-exporter textfile was last written (0: never).",
                                value=self.written_at)
