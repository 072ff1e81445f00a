"""The composition root: builds every component of the marshal once, from the configuration.

Owns construction and teardown order only; every component receives what it needs
explicitly (no globals). Blocking set-up (opening the backend, reading the claims) runs in
executors. Must not contain behaviour of the components it wires.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from sbps import __version__
from sbps.config import Config, Loaded
from sbps.config.choices import AccessMode, Allocation, DnsMode
from sbps.config.render import as_dict
from sbps.core.errors import ConfigError
from sbps.core.identity import target_iqn
from sbps.core.interfaces import CatalogSource, Claims, Gate, ImageCache, Registrar
from sbps.core.rejections import Rejections
from sbps.core.target_state import Portal
from sbps.daemon.supervisor import Supervisor
from sbps.publish.dns import make_registrar
from sbps.publish.dns.addresses import network_addresses
from sbps.publish.gate import make_gate
from sbps.publish.http.app import make_app
from sbps.publish.http.auth import load_or_create_token
from sbps.publish.http.bootdoc import BootSettings
from sbps.publish.http.deps import HttpDeps
from sbps.publish.http.limits import Limits, LimitsCollector
from sbps.publish.http.serve import run_http
from sbps.publish.http.source import StatusSource
from sbps.publish.metrics import CacheStats, SbpsCollector, StagingStats
from sbps.publish.textfile import TextfileWriter
from sbps.reconcile.adoption import Adoption
from sbps.reconcile.commands import ImageLevers
from sbps.reconcile.desired import DesiredState
from sbps.reconcile.effects import Threads
from sbps.reconcile.failures import PassFailures
from sbps.reconcile.gather import Gather, GatherSettings
from sbps.reconcile.lifecycle import Lifecycle
from sbps.reconcile.loop import Parts, Reconciler
from sbps.reconcile.portals import PortalLedger, parse_portals
from sbps.reconcile.serving import Serving
from sbps.reconcile.staging import BackgroundStaging
from sbps.sources.catalog import Catalog, ImsClient, make_auth
from sbps.sources.claims import ClaimRegistry, Settings, journal_path
from sbps.sources.claims.probe import StoreCheck, Verdict
from sbps.sources.s3 import S3, read_credentials
from sbps.sources.stager import Stager
from sbps.target import TargetBackend
from sbps.target.access import policy as access
from sbps.target.access.files import AccessSource
from sbps.target.factory import make_backend

log = logging.getLogger(__name__)


@dataclass
class Components:
    loaded: Loaded
    hostname: str
    s3: S3
    ims: ImsClient
    catalog: Catalog
    stager: Stager
    claims: ClaimRegistry
    backend: TargetBackend
    gate: Gate
    registrar: Registrar
    reconciler: Reconciler
    rejections: Rejections
    access: AccessSource

    async def close(self) -> None:
        await self.reconciler.close()
        await self.stager.aclose()
        await self.ims.close()
        close = getattr(self.registrar, "close", None)
        if close is not None:
            await close()


def hostname_of(loaded: Loaded) -> str:
    return loaded.config.node.hostname or socket.gethostname().split(".")[0]


async def build(loaded: Loaded, supervisor: Supervisor) -> Components:
    cfg = loaded.config
    hostname = hostname_of(loaded)
    try:
        iqn = target_iqn(hostname, cfg.target.iqn_prefix)
    except ValueError as exc:
        raise ConfigError("node.hostname", hostname, str(exc)) from None
    rejections = Rejections()
    s3 = S3(cfg.s3, read_credentials(cfg.s3.credential_file))
    ims = ImsClient(cfg.catalog, make_auth(cfg.catalog, rejections))
    catalog = Catalog(cfg, ims, s3)
    stager = Stager(cfg.stage, s3)
    settings = Settings.from_config(cfg.target)
    # The bucket must prove it honours conditional writes before the first claim write.
    store_check = StoreCheck(s3, cfg.s3.bucket, settings.prefix, hostname)
    claims = ClaimRegistry(s3, cfg.s3.bucket, hostname, settings,
                           journal_path(cfg.reconcile.state_dir), store_check=store_check,
                           rejections=rejections)
    backend = make_backend(cfg, iqn)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, backend.open)
    if cfg.target.lun_allocation is Allocation.CLAIMS:
        # A restored or rebuilt worker learns the agreed ids before its first pass.
        await loop.run_in_executor(None, claims.sync)
    for problem in await stager.check_all():
        log.warning("cache: %s %s: %s", problem.obj, problem.code, problem.reason)
    if cfg.stage.rehash_on_start:
        supervisor.start("rehash", stager.rehash_all(), oneshot=True)
    registrar = make_registrar(cfg, hostname, rejections)
    gate = make_gate(cfg.node, hostname, rejections)
    access_source = AccessSource(cfg.target, rejections)
    reconciler = make_reconciler(cfg, iqn, catalog=catalog, stager=stager, claims=claims,
                                 backend=backend, gate=gate, registrar=registrar,
                                 access=access_source, clock=time.time)
    c = Components(loaded, hostname, s3, ims, catalog, stager, claims, backend,
                   gate, registrar, reconciler, rejections, access_source)
    start_http(c, supervisor)
    return c


def make_reconciler(cfg: Config, iqn: str, *, catalog: CatalogSource, stager: ImageCache,
                    claims: Claims, backend: TargetBackend, gate: Gate, registrar: Registrar,
                    access: AccessSource, clock: Callable[[], float]) -> Reconciler:
    """The loop and its parts (lifecycle, desired state, serving, adoption, staging, the
    plan input), wired from the configuration; the tests build theirs here too, with fakes
    of the components and a fake clock."""
    rc = cfg.reconcile
    threads = Threads()
    lifecycle = Lifecycle(clock, rc.backoff_initial, rc.backoff_max)
    staging = BackgroundStaging(stager, lifecycle)
    adoption = Adoption(rc.state_dir, cfg.stage.cache_dir,
                        keep_backing=cfg.target.adopt_keep_backing,
                        quiet=min(rc.retire_grace, 300.0), clock=clock)
    settings = GatherSettings(cfg.stage.cache_dir,
                              parse_portals(cfg.target.portals, cfg.target.port),
                              Portal("0.0.0.0", cfg.target.port),
                              rc.retire_grace, rc.retire_max_wait)
    # Closing waits a DNS TTL (at most ten minutes) unless a drain delay is configured.
    drain_delay = rc.drain_delay if rc.drain_delay >= 0 else min(float(cfg.dns.ttl), 600.0)
    parts = Parts(
        catalog=catalog, claims=claims, backend=backend, lifecycle=lifecycle,
        desired=DesiredState(catalog, claims, lifecycle,
                             empty_catalog_passes=rc.empty_catalog_passes, on_io=threads.io),
        serving=Serving(gate, registrar, drain_delay=drain_delay, clock=clock,
                        drain_file=Path(rc.state_dir) / "drained",
                        addresses=None if cfg.dns.mode is DnsMode.OFF
                        or not cfg.dns.require_portal
                        else functools.partial(network_addresses, cfg)),
        gather=Gather(settings, stager=stager, claims=claims, backend=backend,
                      adoption=adoption, access=access,
                      portals=PortalLedger(rc.state_dir), lifecycle=lifecycle,
                      staging=staging, threads=threads),
        staging=staging, levers=ImageLevers(lifecycle), threads=threads,
        failures=PassFailures(min(rc.backoff_initial, rc.interval), rc.interval))
    return Reconciler(parts, iqn=iqn, interval=rc.interval, clock=clock)


def _staging_stats(stager: Stager) -> StagingStats:
    st = stager.status()
    return StagingStats(bytes_total=st.bytes_downloaded,
                        seconds_total=sum(d for _, d in st.durations),
                        downloads_total=st.downloads_ok,
                        failures_total=sum(n for _, n in st.failures))


def _cache_stats(stager: Stager) -> CacheStats:
    st = stager.status()
    return CacheStats(used_bytes=st.cache_used, budget_bytes=st.cache_budget,
                      full=st.cache_full)


def _store_verdict(claims: ClaimRegistry) -> Callable[[], str] | None:
    check = claims.store_check
    return None if check is None else lambda: check.state.verdict.value


def _store_refused(claims: ClaimRegistry) -> Callable[[], str] | None:
    check = claims.store_check
    return None if check is None else lambda: (
        check.state.reason if check.state.verdict is Verdict.REFUSED else "")


def _secret(path: str) -> str | None:
    if not path:
        return None
    try:
        secret = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError("reconcile.notify_secret_file", path,
                          f"cannot read: {exc.strerror}") from None
    if len(secret) < 16:
        raise ConfigError("reconcile.notify_secret_file", path, "the secret must have at "
                          "least 16 characters")
    return secret


def _allowed(source: AccessSource) -> Callable[[str | None, str | None], bool]:
    """The catalog view of one initiator, under the access policy the passes use (its
    ``last`` policy reads no file, so this is safe on the event loop)."""
    def allowed(tenant: str | None, initiator: str | None) -> bool:
        policy = source.last
        return access.allowed(policy, tenant, initiator)
    return allowed


def start_http(c: Components, supervisor: Supervisor) -> None:
    """The API, metrics and admin endpoints, as supervised tasks."""
    cfg = c.loaded.config
    r = c.reconciler
    collector = SbpsCollector(lambda: r.status, version=__version__,
                              staging=lambda: _staging_stats(c.stager),
                              cache=lambda: _cache_stats(c.stager),
                              sessions=lambda: {r.iqn: len(r.status.sessions)},
                              rejections=c.rejections.counts,
                              store_check=_store_verdict(c.claims))
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    limits = Limits.from_config(cfg.http)
    registry.register(LimitsCollector(limits))
    textfile = TextfileWriter(cfg.http.textfile_path, cfg.http.textfile_interval,
                              collector.compat)
    registry.register(textfile)
    source = StatusSource(lambda: r.status, listeners=[collector.observe])
    # Boot parameters come from the snapshot the passes build, never from IMS or S3.
    boot = BootSettings(cfg.node.system_name, cfg.node.site_domain, cfg.target.iqn_prefix) \
        if cfg.node.system_name and cfg.node.site_domain else None
    deps = HttpDeps(control=r, source=source,
                    token=load_or_create_token(cfg.http, cfg.reconcile.state_dir),
                    registry=registry, config=as_dict(c.loaded), tasks=supervisor.describe,
                    boot=boot, claims_held=c.claims.held,
                    store_refused=_store_refused(c.claims),
                    notify_secret=_secret(cfg.reconcile.notify_secret_file),
                    allowed=_allowed(c.access) if cfg.target.access is AccessMode.ACL else None,
                    limits=limits)
    supervisor.start("http", run_http(cfg.http, make_app(deps), cfg.reconcile.state_dir,
                                      started=lambda port: log.info(
                                          "HTTP API on %s:%d", cfg.http.bind, port)))
    supervisor.start("http-follow", source.follow(r))
    supervisor.start("textfile", textfile.run(r))
