"""Prometheus metrics: a collector that reads the status snapshot at scrape time.

Owns the metric names, their labels and their semantics (documented in docs/metrics.md),
and the few totals that must be accumulated across passes (runs, actions, durations, DNS
outcomes, label-to-export latency), fed by ``observe()`` once per snapshot. Every family
is built fresh in ``collect()``; nothing is registered globally: the daemon registers the
collector in the registry it passes to the HTTP app. Must not read configfs or call a
backend: per-LUN counters come from the snapshot the reconciler already took.
"""

from __future__ import annotations

import platform
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sbps.core.decode import CODES
from sbps.core.model import ImageKind, ImageState, Problem
from sbps.core.target_state import LunStats
from sbps.reconcile.lifecycle import ImageStatus
from sbps.reconcile.status import Status

PASS_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
EXPORT_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
REJECTED = frozenset(CODES)
#: The field's metric names that node-exporter served (docs/upgrade.md).
COMPAT_NAMES = ("iscsi_read_mbytes", "iscsi_read_rate", "iscsi_rootfs_lun_cnt",
                "iscsi_pe_lun_cnt")
_WAITING = (ImageState.DISCOVERED, ImageState.STAGING, ImageState.STAGED, ImageState.FAILED)



@dataclass(frozen=True)
class StagingStats:
    """Totals since start, as the stager counts them."""

    bytes_total: int = 0
    seconds_total: float = 0.0
    downloads_total: int = 0
    failures_total: int = 0


@dataclass(frozen=True)
class CacheStats:
    used_bytes: int
    budget_bytes: int  # 0: no limit
    full: bool = False  # an image waits for room within the budget


def _histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
    """prometheus_client's histogram, in no registry (the collector yields it)."""
    return Histogram(name, doc, buckets=buckets, registry=None)


def _family(hist: Histogram) -> Iterator[Metric]:
    """``hist`` as it has always been exposed: bounds as written ("60", where the client
    writes "60.0", so recorded series keep their labels) and no ``_created`` series."""
    for m in hist.collect():
        fam = HistogramMetricFamily(m.name, m.documentation)
        buckets = [(_fmt(s.labels["le"]), s.value) for s in m.samples
                   if s.name.endswith("_bucket")]
        total = next(s.value for s in m.samples if s.name.endswith("_sum"))
        fam.add_metric([], buckets, sum_value=total)
        yield fam


def _fmt(le: str) -> str:
    bound = float(le)
    return str(int(bound)) if bound.is_integer() else le


class SbpsCollector(Collector):
    """Builds every sbps and field metric from the current snapshot.

    ``source`` returns the current snapshot; the optional callables must be cheap and
    non-blocking (they read counters kept in memory by their owners).
    """

    def __init__(self, source: Callable[[], Status], *, version: str,
                 staging: Callable[[], StagingStats] | None = None,
                 cache: Callable[[], CacheStats] | None = None,
                 sessions: Callable[[], Mapping[str, int]] | None = None,
                 rejections: Callable[[], Mapping[tuple[str, str], int]] | None = None,
                 store_check: Callable[[], str] | None = None) -> None:
        self._source = source
        self._rejections = rejections
        self._store_check = store_check
        self._version = version
        self._staging = staging
        self._cache = cache
        self._sessions = sessions
        self._lock = threading.Lock()
        self._seen = -1
        self._runs: Counter[str] = Counter()
        self._actions: Counter[tuple[str, str]] = Counter()
        self._dns: Counter[str] = Counter()
        self._rejected: Counter[tuple[str, str]] = Counter()
        self._rejected_now: frozenset[Problem] = frozenset()
        self._durations = _histogram("sbps_reconcile_duration_seconds",
                                     "Duration of reconcile passes.", PASS_BUCKETS)
        self._latency = _histogram("sbps_label_to_export_seconds",
                                   "Time from an image's discovery to its export.",
                                   EXPORT_BUCKETS)
        self._first_seen: dict[str, float] = {}
        self._prev: tuple[float, Mapping[int, LunStats]] | None = None
        self._cur: tuple[float, Mapping[int, LunStats]] | None = None

    # Accumulation ---------------------------------------------------------------------

    def observe(self, status: Status) -> None:
        """Account for one snapshot; idempotent, so both the pass hook and scrapes call it."""
        with self._lock:
            at = status.stats_at
            if at is not None and (self._cur is None or at > self._cur[0]):
                self._prev, self._cur = self._cur, (at, dict(status.stats))
            if status.passes <= self._seen or status.passes == 0:
                return
            self._seen = status.passes
            ok = not status.errors and not status.last_report.failed
            self._runs["bug" if status.bug else "success" if ok else "error"] += 1
            self._count_rejected(status.problems)
            self._durations.observe(status.last_pass_seconds)
            for r in status.last_report.results:
                result = "ok" if r.ok else "skipped" if r.skipped else "failed"
                self._actions[(r.action.kind, result)] += 1
            self._dns[_dns_result(status)] += 1
            self._track_exports(status.images)

    def _count_rejected(self, problems: Sequence[Problem]) -> None:
        # A document counts once when its rejection appears, like the log line it gets.
        now = frozenset(p for p in problems if p.code in REJECTED)
        for p in now - self._rejected_now:
            self._rejected[(p.field.split(".")[0].split("[")[0], p.code)] += 1
        self._rejected_now = now

    def _track_exports(self, images: Sequence[ImageStatus]) -> None:
        present = set()
        for s in images:
            present.add(s.name)
            if s.state in _WAITING:
                self._first_seen.setdefault(s.name, s.since)
            elif s.state is ImageState.EXPORTED and s.name in self._first_seen:
                self._latency.observe(max(0.0, s.since - self._first_seen.pop(s.name)))
        for name in set(self._first_seen) - present:
            del self._first_seen[name]

    # Collection -----------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        status = self._source()
        self.observe(status)
        with self._lock:
            yield from self._totals()
            rates = self._rates()
        yield from self._field(status, rates)
        yield from self._identity(status)
        yield from self._state(status)
        yield from self._optional()

    def _totals(self) -> Iterator[Metric]:
        runs = CounterMetricFamily("sbps_reconcile_runs", "Reconcile passes by result.",
                                   labels=["result"])
        for result in ("success", "error", "bug"):
            runs.add_metric([result], self._runs[result])
        yield runs
        rejected = CounterMetricFamily("sbps_documents_rejected", "Documents from outside "
                                       "(IMS records, manifests, S3 answers, claim objects, "
                                       "Kubernetes and PowerDNS answers, the tenant map, "
                                       "token output) rejected, by source and reason; each "
                                       "counted once when it appears.",
                                       labels=["source", "reason"])
        every = Counter(self._rejected)
        every.update(self._rejections() if self._rejections else {})
        for (source, reason), n in sorted(every.items()):
            rejected.add_metric([source, reason], n)
        yield rejected
        yield from _family(self._durations)
        actions = CounterMetricFamily("sbps_actions", "Applied actions by kind and result.",
                                      labels=["kind", "result"])
        for (kind, result), n in sorted(self._actions.items()):
            actions.add_metric([kind, result], n)
        yield actions
        dns = CounterMetricFamily("sbps_dns_updates", "DNS reconciliations (one per pass) "
                                  "by outcome.", labels=["result"])
        for result in ("registered", "withdrawn", "failed"):
            dns.add_metric([result], self._dns[result])
        yield dns
        yield from _family(self._latency)

    def _rates(self) -> dict[int, float]:
        if self._prev is None or self._cur is None:
            return {}
        (t0, before), (t1, after) = self._prev, self._cur
        if t1 <= t0:
            return {}
        out = {}
        for index, now in after.items():
            old = before.get(index)
            if old is not None and now.commands >= old.commands:
                out[index] = (now.commands - old.commands) / (t1 - t0)
        return out

    def compat(self) -> list[Metric]:
        """The field's four ``iscsi_*`` families for node-exporter's textfile collector
        (``sbps.publish.textfile``), labelled ``lun="lun_<id>"``: the configfs name the
        field's metrics carried, which the site's dashboard selects (``lun=~"lun.*"``)."""
        status = self._source()
        self.observe(status)
        with self._lock:
            rates = self._rates()
        return [m for m in self._field(status, rates, lun=configfs_lun)
                if m.name in COMPAT_NAMES]

    def _field(self, status: Status, rates: Mapping[int, float],
               lun: Callable[[int], str] = str) -> Iterator[Metric]:
        """The field agent's names, kept so existing dashboards keep working."""
        by_name = {s.name: s.image for s in status.images if s.image is not None}
        target = status.target
        luns = sorted(target.luns, key=lambda entry: entry.index) if target else []
        mbytes = GaugeMetricFamily("iscsi_read_mbytes", "MiB read from a LUN since it was "
                                   "created.", labels=["lun", "key", "ims_id"])
        rate = GaugeMetricFamily("iscsi_read_rate", "Commands per second on a LUN between "
                                 "the last two readings of the counters (each scrape reads "
                                 "them).", labels=["lun", "key", "ims_id"])
        read_total = CounterMetricFamily("sbps_lun_read_bytes", "Bytes read from a LUN "
                                         "since it was created.", labels=["lun", "key",
                                                                          "ims_id"])
        cmds_total = CounterMetricFamily("sbps_lun_commands", "SCSI commands on a LUN since "
                                         "it was created.", labels=["lun", "key", "ims_id"])
        kinds: Counter[ImageKind] = Counter()
        for entry in luns:
            img = by_name.get(entry.storage_object)
            if img is not None:
                kinds[img.kind] += 1
            labels = [lun(entry.index), entry.storage_object,
                      (img.ims_id or "") if img else ""]
            st = status.stats.get(entry.index)
            if st is not None:
                mbytes.add_metric(labels, st.read_bytes / 2**20)
                read_total.add_metric(labels, st.read_bytes)
                cmds_total.add_metric(labels, st.commands)
            if entry.index in rates:
                rate.add_metric(labels, rates[entry.index])
        yield mbytes
        yield rate
        yield read_total
        yield cmds_total
        yield GaugeMetricFamily("iscsi_rootfs_lun_cnt", "Exported LUNs of IMS rootfs images.",
                                value=kinds[ImageKind.ROOTFS])
        yield GaugeMetricFamily("iscsi_pe_lun_cnt", "Exported LUNs of PE images.",
                                value=kinds[ImageKind.PE])

    def _identity(self, status: Status) -> Iterator[Metric]:
        """What this worker exports at which id, so rules can compare workers (peers
        disagree) without the workers talking to each other; and what plan() refused."""
        info = GaugeMetricFamily("sbps_lun_info", "One series per LUN of an sbps image on "
                                 "this worker's target (always 1).",
                                 labels=["lun", "key", "serial", "kind", "ims_id"])
        ours = {s.name: s.image for s in status.images}
        target = status.target
        serials = {so.name: so.serial for so in target.storage_objects} if target else {}
        for lun in sorted(target.luns, key=lambda lun: lun.index) if target else []:
            if lun.storage_object not in ours:
                continue  # foreign LUNs are not ours to compare
            img = ours[lun.storage_object]
            info.add_metric([str(lun.index), lun.storage_object,
                             serials.get(lun.storage_object, ""),
                             img.kind.value if img else "", (img.ims_id or "") if img else ""],
                            1)
        yield info
        notes = GaugeMetricFamily("sbps_plan_notes", "What the last plan noticed and left "
                                  "alone, by code.", labels=["code"])
        for code, n in sorted(Counter(n.code for n in status.notes).items()):
            notes.add_metric([code], n)
        yield notes

    def _state(self, status: Status) -> Iterator[Metric]:
        images = GaugeMetricFamily("sbps_images", "Image versions by lifecycle state.",
                                   labels=["state"])
        states = Counter(s.state for s in status.images)
        for state in ImageState:
            images.add_metric([state.value], states[state])
        yield images
        problems = GaugeMetricFamily("sbps_catalog_problems", "Catalog inputs skipped in "
                                     "the last pass, by reason.", labels=["reason"])
        for code, n in sorted(Counter(p.code for p in status.problems).items()):
            problems.add_metric([code], n)
        yield problems
        yield GaugeMetricFamily("sbps_reconcile_last_duration_seconds",
                                "Duration of the last pass.", value=status.last_pass_seconds)
        yield GaugeMetricFamily("sbps_last_pass_timestamp_seconds", "Start of the last pass.",
                                value=status.last_pass_at or 0)
        yield GaugeMetricFamily("sbps_last_success_timestamp_seconds", "Start of the last "
                                "pass without errors (0: none yet).",
                                value=status.last_success_at or 0)
        yield GaugeMetricFamily("sbps_claims_held", "Image versions holding a LUN id.",
                                value=sum(1 for s in status.images if s.lun_id is not None))
        yield GaugeMetricFamily("sbps_degraded_sources", "Catalog sources that failed in the "
                                "last pass (their last known images are kept).",
                                value=len(status.degraded))
        target = status.target
        for name, doc, value in (
                ("sbps_ready", "1 once a pass has read the target.", status.ready),
                ("sbps_gate_open", "1 while the node gate is open.", status.gate_open),
                ("sbps_serving", "1 while this worker serves (gate open or draining).",
                 status.serving),
                ("sbps_dns_registered", "1 while this worker's DNS records are registered.",
                 status.dns_registered),
                ("sbps_target_enabled", "1 while the target portal group is enabled.",
                 bool(target and target.tpg_enabled))):
            yield GaugeMetricFamily(name, doc, value=int(value))
        yield GaugeMetricFamily("sbps_target_luns", "LUNs on this worker's target.",
                                value=len(target.luns) if target else 0)
        info = GaugeMetricFamily("sbps_build_info", "Version and backend (always 1).",
                                 labels=["version", "backend", "python"])
        info.add_metric([self._version, status.backend, platform.python_version()], 1)
        yield info

    def _optional(self) -> Iterator[Metric]:
        if self._staging is not None:
            st = self._staging()
            for name, doc, value in (
                    ("sbps_staging_bytes", "Bytes downloaded into the cache.", st.bytes_total),
                    ("sbps_staging_seconds", "Time spent staging images.", st.seconds_total),
                    ("sbps_staging_downloads", "Images staged and verified.",
                     st.downloads_total),
                    ("sbps_staging_failures", "Staging attempts that failed.",
                     st.failures_total)):
                yield CounterMetricFamily(name, doc, value=value)
        if self._cache is not None:
            c = self._cache()
            yield GaugeMetricFamily("sbps_cache_used_bytes", "Bytes of verified cache files.",
                                    value=c.used_bytes)
            yield GaugeMetricFamily("sbps_cache_budget_bytes", "Cache budget now: the lower "
                                    "of stage.max_bytes and what stage.keep_free leaves "
                                    "(0: no limit).", value=c.budget_bytes)
            yield GaugeMetricFamily("sbps_cache_full", "1 while an image waits because the "
                                    "cache budget binds.", value=int(c.full))
        if self._sessions is not None:
            fam = GaugeMetricFamily("sbps_sessions", "Logged-in iSCSI sessions per target.",
                                    labels=["target"])
            for iqn, n in sorted(self._sessions().items()):
                fam.add_metric([iqn], n)
            yield fam
        if self._store_check is not None:
            now = self._store_check()
            fam = GaugeMetricFamily(
                "sbps_s3_conditional_writes", "The claim bucket's probe of conditional writes "
                "(1 for the current state: ok, refused, unknown).", labels=["state"])
            for state in ("ok", "refused", "unknown"):
                fam.add_metric([state], int(state == now))
            yield fam


def configfs_lun(index: int) -> str:
    """A LUN as configfs names it (``.../tpgt_1/lun/lun_0``), the field's ``lun`` label."""
    return f"lun_{index}"


def _dns_result(status: Status) -> str:
    if any(e.startswith("dns:") for e in status.errors):
        return "failed"
    return "registered" if status.dns_registered else "withdrawn"
