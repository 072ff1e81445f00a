"""Consistency checks of exported LUNs, the journal and the registry (``sbpsctl luns verify``).

Owns the pure comparison only: the registry reads S3 and hands the snapshots in. The map of
exported LUNs (id -> digest or backstore name, which is the digest's first 15 characters)
comes from the caller: the target backend reads it from the live target. Must not do I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping

from sbps.core.model import Claim, Problem


def _lun(lun_id: int) -> str:
    return f"LUN {lun_id}"


def check(registry: Iterable[Claim], journal: Iterable[Claim], index: Mapping[str, int],
          exported: Mapping[int, str], hostname: str, *, source: str = "S3",
          pending: Collection[str] = ()) -> list[Problem]:
    """Problems found, each naming the LUN id, the field and what is wrong.

    ``index`` maps digests to the id their key index names; digests missing from it are
    not checked against an index (hash mode has none). ``pending`` names the backstores
    (digests' first 15 characters) of desired images not exported yet: their claims are
    rightly held meanwhile.
    """
    by_id = {c.lun_id: c for c in registry}
    out: list[Problem] = []
    for lun_id, name in sorted(exported.items()):
        c = by_id.get(lun_id)
        if c is None:
            out.append(Problem(_lun(lun_id), "claim", f"exported ({name}) but no claim in "
                               f"the {source} registry", "claim_missing"))
            continue
        if not name or not c.digest.startswith(name):
            out.append(Problem(_lun(lun_id), "identity", f"exported as {name} but claimed "
                               f"by {c.identity_key} ({c.digest[:15]})", "claim_mismatch"))
            continue
        if not c.held_by(hostname):
            out.append(Problem(_lun(lun_id), "holders", f"exported by {hostname}, which is "
                               "not among the holders", "not_holder"))
        agreed = index.get(c.digest)
        if agreed is not None and agreed != lun_id:
            out.append(Problem(_lun(lun_id), "index", f"{c.identity_key} agreed on LUN "
                               f"{agreed}, not {lun_id}", "index_mismatch"))
    for c in sorted(by_id.values(), key=lambda c: c.lun_id):
        if c.held_by(hostname) and c.lun_id not in exported \
                and c.digest[:15] not in pending:
            out.append(Problem(_lun(c.lun_id), "holders", f"held by {hostname} for "
                               f"{c.identity_key} but not exported", "held_not_exported"))
    claims_of: dict[str, list[Claim]] = defaultdict(list)
    for c in by_id.values():
        claims_of[c.digest].append(c)
    for digest, claims in sorted(claims_of.items()):
        if len(claims) > 1:
            ids = ", ".join(str(c.lun_id) for c in sorted(claims, key=lambda c: c.lun_id))
            out.append(Problem(claims[0].identity_key, "lun_id", f"claimed on LUNs {ids}; "
                               f"the agreed one is {index.get(digest, 'unknown')}",
                               "duplicate"))
    for c in journal:
        if not c.held_by(hostname):
            continue
        now = by_id.get(c.lun_id)
        if now is None or now.digest != c.digest:
            owner = now.identity_key if now is not None else "nobody"
            out.append(Problem(_lun(c.lun_id), "journal", f"the journal says {c.identity_key}, "
                               f"the {source} registry says {owner}", "journal_stale"))
    return out
