"""The composition root: builds every component of the marshal once, from the configuration.

Owns construction and teardown order only; every component receives what it needs
explicitly (no globals). Blocking set-up (opening the backend, reading the claims) runs in
executors. Must not contain behaviour of the components it wires.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from sbps.backends import TargetBackend, make_backend
from sbps.catalog import Catalog, ImsClient, make_auth
from sbps.claims import ClaimRegistry, Settings, journal_path
from sbps.config import Loaded
from sbps.dns import make_registrar
from sbps.errors import ConfigError
from sbps.gate import make_gate
from sbps.identity import target_iqn
from sbps.ports import Gate, Registrar
from sbps.reconciler import Reconciler
from sbps.s3 import S3, read_credentials
from sbps.stager import Stager
from sbps.supervisor import Supervisor

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
    s3 = S3(cfg.s3, read_credentials(cfg.s3.credential_file))
    ims = ImsClient(cfg.catalog, make_auth(cfg.catalog))
    catalog = Catalog(cfg, ims, s3)
    stager = Stager(cfg.stage, s3)
    claims = ClaimRegistry(s3, cfg.s3.bucket, hostname, Settings.from_config(cfg.target),
                           journal_path(cfg.reconcile.state_dir))
    backend = make_backend(cfg, iqn)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, backend.open)
    if cfg.target.lun_allocation == "claims":
        # A restored or rebuilt worker learns the agreed ids before its first pass.
        await loop.run_in_executor(None, claims.sync)
    for problem in await stager.check_all():
        log.warning("cache: %s %s: %s", problem.obj, problem.code, problem.reason)
    if cfg.stage.rehash_on_start:
        supervisor.start("rehash", stager.rehash_all(), oneshot=True)
    registrar = make_registrar(cfg, hostname)
    reconciler = Reconciler(cfg, iqn, catalog=catalog, stager=stager, claims=claims,
                            backend=backend, gate=make_gate(cfg.node, hostname),
                            registrar=registrar)
    return Components(loaded, hostname, s3, ims, catalog, stager, claims, backend,
                      reconciler.gate, registrar, reconciler)
