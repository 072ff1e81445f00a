"""The plan input of one pass: everything plan() looks at, gathered from the components.

Owns the reading half of a pass before plan(): which desired images are staged and
verified, their LUN ids (claims from the journal, candidates for new ones), the claims
held for images no longer desired, the field agent's LUNs adopted in place, the portals
sbps created, the access policy, and the counters of the LUNs decided on by them
(retiring, adopted and moving ones).
Blocking calls run in ``effects.Threads``. Must not change the target or the claims; the
only writes are adoption's and the portal record's own state files and telling the backend
what was adopted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sbps.core.actions import Action
from sbps.core.interfaces import Claims, ImageCache
from sbps.core.model import DesiredImage
from sbps.core.target_state import Portal, TargetState
from sbps.reconcile.adoption import Adoption
from sbps.reconcile.effects import Threads
from sbps.reconcile.lifecycle import Lifecycle
from sbps.reconcile.plan import PlanInput, moving, retiring
from sbps.reconcile.portals import PortalLedger
from sbps.reconcile.staging import BackgroundStaging
from sbps.target import TargetBackend
from sbps.target.access.files import AccessSource


@dataclass(frozen=True)
class GatherSettings:
    cache_dir: str
    portals: frozenset[Portal]
    default_portal: Portal
    retire_grace: float
    retire_max_wait: float


class Gather:
    def __init__(self, settings: GatherSettings, *, stager: ImageCache, claims: Claims,
                 backend: TargetBackend, adoption: Adoption, access: AccessSource,
                 portals: PortalLedger, lifecycle: Lifecycle, staging: BackgroundStaging,
                 threads: Threads) -> None:
        self.settings = settings
        self.stager, self.claims, self.backend = stager, claims, backend
        self.adoption, self.access, self.lifecycle = adoption, access, lifecycle
        self.staging, self.threads = staging, threads
        self.portals = portals

    def applied(self, action: Action) -> None:
        """After a target action succeeded: record the portals sbps created."""
        self.portals.applied(action)

    async def plan_input(self, desired: tuple[DesiredImage, ...], target: TargetState,
                         serve: bool | None, *, promoted: frozenset[str]) -> PlanInput:
        """``serve`` None: leave the TPG as it is; ``promoted``: names to export anew."""
        s, io = self.settings, self.threads.io
        staged = {}
        for img in desired:
            entry = self.stager.entry(img.identity.digest)
            if entry is not None and entry.etag == img.source.etag:
                staged[img.identity.digest] = entry.path
        claims: dict[str, int] = {}
        candidates: dict[str, int] = {}
        for img in desired:
            c = await io(self.claims.lookup, img.identity)
            if c is not None:
                claims[img.identity.digest] = c.lun_id
            else:
                candidates[img.identity.digest] = await io(self.claims.candidate,
                                                           img.identity)
        # Claims this worker holds for images no longer desired, so retiring releases them.
        for c_digest, lun_id in (await io(self.claims.held)).items():
            claims.setdefault(c_digest, lun_id)
        adopted = self.adoption.update(desired, target)
        await self.threads.backend(self.backend.adopt, adopted)
        # The access policy reads its files (tenant map, CHAP): an unusable one fails the
        # target part of the pass (ConfigError), never loosens or revokes access.
        access, attributes = await io(self.access.current, desired)
        base = PlanInput(desired=desired, target=target, cache_dir=s.cache_dir,
                         staged=staged, claims=claims, candidates=candidates,
                         adopted=adopted, replace=promoted,
                         blocked=self.lifecycle.blocked() | self.staging.running(),
                         serve=target.tpg_enabled if serve is None else serve,
                         portals=s.portals, default_portal=s.default_portal,
                         own_portals=await io(self.portals.current, target.portals),
                         attributes=attributes, access=access)
        # Counters only of the LUNs decided on by them: retiring, adopted and moving ones.
        leaving = retiring(base)
        moves = moving(base)
        watched = leaving | self.adoption.watched()
        stats = await self.threads.backend(self.backend.stats, sorted(
            {lun.index for lun in target.luns if lun.storage_object in watched} | moves.keys()))
        due = self.lifecycle.retire_due(leaving, target, stats, s.retire_grace,
                                        s.retire_max_wait)
        return replace(base, retire_due=due, switch_backing=self.adoption.idle(target, stats),
                       move_due=self.adoption.moves_due(moves, stats, s.retire_grace))

