"""The portal part of the planner: which portals of this worker's TPG to add and remove.

Called by ``sbps.reconcile.plan`` only; imports only the model modules. Must not do I/O,
read clocks or keep state: which portals sbps created comes in as a value
(``sbps.reconcile.portals.PortalLedger`` keeps that record).

Rules (docs/upgrade.md, "Portals"):
- A portal sbps did not create is never removed or replaced: a field worker's TPG carries
  the site's NMN and HSN portals (csm-config's provisioning deletes the wildcard one).
- No ``target.portals`` configured: a TPG that has portals keeps them as they are; only a
  TPG with none gets the default portal (every address on ``target.port``).
- ``target.portals`` configured: the missing ones are added, unless one would clash with
  a portal sbps did not create (a wildcard and a specific address on one port cannot both
  listen: the kernel's bind fails); the portals sbps created and no longer wants are
  removed. Portals that are not sbps's and not configured are reported, never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sbps.core.actions import Action, Note, SetPortals
from sbps.core.target_state import Portal

WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", "::0", "[::0]"})


def clash(a: Portal, b: Portal) -> bool:
    """Whether ``a`` and ``b`` cannot both listen: one port, a wildcard and another address."""
    return (a.port == b.port and a.address != b.address
            and (a.address in WILDCARDS or b.address in WILDCARDS))


def portal_actions(configured: frozenset[Portal], default: Portal, live: frozenset[Portal],
                   created: frozenset[Portal], notes: list[Note]) -> list[Action]:
    """``configured``: ``target.portals`` (empty: keep what the TPG has); ``live``: the
    TPG's portals now; ``created``: those of them sbps created."""
    others = live - created
    if configured:
        wanted, why = configured, "configured in target.portals"
        for p in sorted(others - configured, key=str):
            notes.append(Note(str(p), "portal_kept", f"portal {p} was not created by sbps: "
                              "left alone although target.portals does not list it"))
    elif live:
        return []
    else:
        wanted, why = frozenset({default}), "the TPG has no portal: the default one"
    add: set[Portal] = set()
    for p in sorted(wanted - live, key=str):
        blocking = sorted(str(q) for q in others if clash(p, q))
        if blocking:
            notes.append(Note(str(p), "portal_conflict", f"portal {p} would clash with "
                              f"{', '.join(blocking)}, which sbps did not create: not "
                              "added (list the existing portals in target.portals, or "
                              "leave target.portals empty to keep them)"))
            continue
        add.add(p)
    remove = (live & created) - wanted
    if not add and not remove:
        return []
    what = [f"add {', '.join(sorted(map(str, add)))}"] if add else []
    what += [f"remove {', '.join(sorted(map(str, remove)))} (created by sbps)"] if remove \
        else []
    return [SetPortals(add=frozenset(add), remove=frozenset(remove),
                       reason=f"{'; '.join(what)}: {why}")]


def unserved(addresses: Mapping[str, str], portals: Iterable[Portal]) -> dict[str, str]:
    """The networks whose A address no portal listens on (a wildcard portal listens on
    every address)."""
    listening = {p.address for p in portals}
    if listening & WILDCARDS:
        return {}
    return {net: a for net, a in sorted(addresses.items()) if a not in listening}
