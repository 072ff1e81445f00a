"""Access policy: who may read which image, and with which CHAP credentials.

Owns the pure policy: matching initiator names against names and prefixes, which images an
initiator may read (``allowed``, also for the catalog API), the node ACLs and CHAP the target
should have (``spec``) and the TPG attributes that go with them (``attributes``). Reading the
tenant map and the CHAP files is in ``sbps.target.access.files``; ``AccessSource`` there ties both
together for the reconciler.

Must not log or show a secret (CHAP secrets travel as ``target_state.Secret``), must not talk to a
target, and must not read files here.

Rules (docs/access.md):
- ``open``: every initiator reads every image (generated ACLs, write-protected).
- ``acl``: an image labelled with a tenant (``target.tenant_label``) is read only by that
  tenant's initiators; an untenanted image by ``target.initiators`` and, with
  ``target.untenanted = shared``, by every tenant's initiators too. A label naming a tenant
  the map does not know makes the image readable by nobody.
- A pattern is an exact initiator name, or a prefix ending in ``*``. Node ACLs need exact
  names, so prefixes are expanded against the names the tenant map lists (``nodes``) and
  the exact names anywhere in the policy; ``allowed`` matches prefixes directly.
- On a backend that cannot mask LUNs per initiator (tgt), every allowed initiator reads
  every image; the configuration refuses tenants there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sbps.core.errors import ConfigError
from sbps.core.model import DesiredImage
from sbps.core.target_state import NO_CHAP, AccessMode, AccessSpec, AclSpec, Chap

#: The field's behaviour: generated ACLs, write-protected, no CHAP.
OPEN_ATTRIBUTES = (("generate_node_acls", "1"), ("demo_mode_write_protect", "1"),
                   ("cache_dynamic_acls", "1"), ("authentication", "0"))


@dataclass(frozen=True)
class ChapFiles:
    """Where one set of CHAP credentials is read from (paths only, never the values)."""

    user_file: str
    secret_file: str
    mutual_user_file: str = ""
    mutual_secret_file: str = ""
    key: str = "target.chap_user_file"
    """The configuration key (or tenant map entry) the files came from, for errors."""


@dataclass(frozen=True)
class Tenant:
    name: str
    initiators: tuple[str, ...] = ()
    chap: ChapFiles | None = None


@dataclass(frozen=True)
class TenantMap:
    """The tenant map file's content: tenants, and the node names prefixes expand against."""

    tenants: Mapping[str, Tenant] = field(default_factory=dict)
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    mode: AccessMode = AccessMode.OPEN
    initiators: tuple[str, ...] = ()
    """Patterns that may read untenanted images (``target.initiators``)."""
    untenanted_shared: bool = True
    tenants: TenantMap = field(default_factory=TenantMap)
    chap: ChapFiles | None = None
    """Target-wide CHAP: the TPG's, and every ACL's that has none of its own."""
    masking: bool = True
    """The backend maps LUNs per initiator (LIO); False for tgt."""


def matches(pattern: str, initiator: str) -> bool:
    """Initiator names compare case-insensitively (RFC 3722 normalises them to lower case)."""
    pattern, initiator = pattern.lower(), initiator.lower()
    if pattern.endswith("*"):
        return initiator.startswith(pattern[:-1])
    return initiator == pattern


def _any(patterns: Iterable[str], initiator: str) -> bool:
    return any(matches(p, initiator) for p in patterns)


def allowed(policy: Policy, tenant: str | None, initiator: str | None) -> bool:
    """May ``initiator`` read an image of ``tenant`` (None: untenanted)? Without an
    initiator name (an anonymous request): only in ``open`` mode."""
    if policy.mode is AccessMode.OPEN:
        return True
    if not initiator:
        return False
    tenants = policy.tenants.tenants
    in_tenant = any(_any(t.initiators, initiator) for t in tenants.values())
    if not policy.masking:
        return _any(policy.initiators, initiator) or in_tenant
    if tenant is None:
        return _any(policy.initiators, initiator) or (policy.untenanted_shared and in_tenant)
    owner = tenants.get(tenant)
    return owner is not None and _any(owner.initiators, initiator)


def initiators(policy: Policy) -> tuple[str, ...]:
    """Exact initiator names that get a node ACL: exact names as given, prefixes expanded
    against the tenant map's nodes and every exact name of the policy."""
    patterns = list(policy.initiators)
    for tenant in policy.tenants.tenants.values():
        patterns += tenant.initiators
    # Lower case, as RFC 3722 normalises names and rtslib names ACLs.
    exact = {p.lower() for p in patterns if not p.endswith("*")}
    known = exact | {n.lower() for n in policy.tenants.nodes}
    out = set(exact)
    for p in patterns:
        if p.endswith("*"):
            out.update(n for n in known if matches(p, n))
    return tuple(sorted(out))


def unknown_tenants(policy: Policy, images: Iterable[DesiredImage]) -> tuple[str, ...]:
    """Tenants named by image labels that the map does not know (their images are readable
    by nobody in ``acl`` mode)."""
    if policy.mode is AccessMode.OPEN or not policy.masking:
        return ()
    known = policy.tenants.tenants
    return tuple(sorted({i.tenant for i in images if i.tenant and i.tenant not in known}))


def chap_sources(policy: Policy) -> tuple[ChapFiles, ...]:
    """Every set of CHAP files the policy uses (to be read before ``spec``)."""
    out = [policy.chap] if policy.chap is not None else []
    out += [t.chap for _, t in sorted(policy.tenants.tenants.items()) if t.chap is not None]
    return tuple(out)


def spec(policy: Policy, desired: Iterable[DesiredImage],
         credentials: Mapping[ChapFiles, Chap]) -> AccessSpec:
    """The ACLs and CHAP the target should have. ``credentials`` holds what
    ``chap_sources`` names, as read by ``sbps.target.access.files``. ConfigError when one
    initiator would need two different credentials (it belongs to two tenants with their
    own CHAP), or when CHAP is required of some ACLs but others have none."""
    default = credentials[policy.chap] if policy.chap is not None else NO_CHAP
    if policy.mode is AccessMode.OPEN:
        return AccessSpec(AccessMode.OPEN, (), default)
    images = tuple(desired)
    acls = []
    for initiator in initiators(policy):
        names = frozenset(i.identity.name for i in images
                          if allowed(policy, i.tenant, initiator))
        acls.append(AclSpec(initiator, names, _chap_of(policy, initiator, credentials,
                                                       default)))
    with_chap = [a.initiator for a in acls if a.chap.enabled]
    if with_chap and len(with_chap) != len(acls):
        without = next(a.initiator for a in acls if not a.chap.enabled)
        raise ConfigError("target.chap_user_file", "", f"{with_chap[0]} has CHAP credentials "
                          f"but {without} has none: LIO requires CHAP of every ACL once "
                          "any has it; set target-wide CHAP as the default")
    return AccessSpec(AccessMode.ACL, tuple(acls), default)


def _chap_of(policy: Policy, initiator: str, credentials: Mapping[ChapFiles, Chap],
             default: Chap) -> Chap:
    own = {t.chap for t in policy.tenants.tenants.values()
           if t.chap is not None and _any(t.initiators, initiator)}
    if len(own) > 1:
        raise ConfigError("target.tenant_map_file", initiator, "belongs to tenants with "
                          "different CHAP credentials; an ACL has one set")
    return credentials[own.pop()] if own else default


def attributes(access: AccessSpec) -> tuple[tuple[str, str], ...]:
    """TPG attributes for the spec: read-only always; ACL mode without generated ACLs;
    ``authentication=1`` whenever CHAP is configured, so no login goes without it."""
    chap = access.chap.enabled or any(a.chap.enabled for a in access.acls)
    generated = "1" if access.mode is AccessMode.OPEN else "0"
    out = (("generate_node_acls", generated), ("demo_mode_write_protect", "1"),
           ("cache_dynamic_acls", generated), ("authentication", "1" if chap else "0"))
    if access.mode is AccessMode.OPEN:
        return out
    # LIO maps an explicit ACL's LUN with this TPG attribute at the moment of the link;
    # rtslib writes the mapped LUN's write_protect only after it, so without it a mapped
    # LUN would be writable for an instant.
    return (*out, ("prod_mode_write_protect", "1"))
