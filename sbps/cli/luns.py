"""``sbpsctl luns list|verify|release``: the LUN id registry against this worker's journal.

Owns these subcommands only; the registry belongs to ``sbps.sources.claims``. The daemon's journal
in ``reconcile.state_dir`` is read but never written here (the daemon owns it), except by
``release`` in hash mode, where the journal is the registry.

``verify`` compares exported LUNs with their claims. The exported map is the live LUN
table the running marshal reports (``GET /v1/target``, whose ``pending`` images, staging or
failed, rightly hold their ids and are listed, not counted as problems), or ``--exported
FILE`` (JSON object: LUN id -> digest or backstore name); with no daemon to ask, it falls
back to the claims this worker holds in its journal, and says so.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import urllib.request
from dataclasses import asdict
from typing import Any

from sbps.cli._api import default_url
from sbps.config import Config, load
from sbps.core.errors import InputError
from sbps.core.model import Claim
from sbps.sources.claims import Allocation, ClaimRegistry, Settings, is_free, journal_path
from sbps.sources.s3 import S3, read_credentials


def register(sub: Any) -> None:
    p = sub.add_parser("luns", help="list, verify or release LUN id claims")
    lsub = p.add_subparsers(dest="luns_command", metavar="ACTION")
    lsub.required = True
    ls = lsub.add_parser("list", help="the claim registry against the local journal")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_list)
    ver = lsub.add_parser("verify", help="check exported LUNs and the journal against "
                          "their claims (exit 1 on problems)")
    ver.add_argument("--exported", metavar="FILE", help="JSON map of exported LUN ids to "
                     "digests or backstore names (default: the claims this worker holds)")
    ver.add_argument("--url", help="the marshal's API (default: from the state directory "
                     "or http.bind/http.port)")
    ver.add_argument("--json", action="store_true", help="machine-readable output")
    ver.set_defaults(func=_verify)
    rel = lsub.add_parser("release", help="release an orphaned claim (refused while held)")
    rel.add_argument("lun_id", type=int, metavar="ID", help="the LUN id whose claim to "
                     "release")
    rel.add_argument("--force", action="store_true", help="release even while workers "
                     "hold it (they lose the id once its quarantine ends)")
    rel.add_argument("--json", action="store_true", help="machine-readable output")
    rel.set_defaults(func=_release)


def _registry(args: argparse.Namespace, *, writes_hash_journal: bool = False
              ) -> ClaimRegistry:
    cfg: Config = load(args.config).config
    settings = Settings.from_config(cfg.target)
    s3 = None
    if settings.allocation is Allocation.CLAIMS:
        s3 = S3(cfg.s3, read_credentials(cfg.s3.credential_file))
    # In hash mode the journal is the registry, so only a release writes it.
    persist = writes_hash_journal and settings.allocation is Allocation.HASH
    return ClaimRegistry(s3, cfg.s3.bucket, cfg.node.hostname or socket.gethostname(),
                         settings, journal_path(cfg.reconcile.state_dir), persist=persist)


def _state(c: Claim, reg: ClaimRegistry, now: float) -> str:
    if c.holders:
        return "held"
    if is_free(c, now, reg.settings.quarantine):
        return "free"
    return "quarantine" if c.released_at is not None else "unreleased"


def _row(c: Claim | None, cached: Claim | None, reg: ClaimRegistry, now: float
         ) -> dict[str, Any]:
    shown = c or cached
    assert shown is not None
    if cached is None:
        journal = "absent"
    elif c is None:
        journal = "not-in-registry"
    else:
        journal = "same" if (cached.digest, cached.holders, cached.pe_etag) == (
            c.digest, c.holders, c.pe_etag) else "differs"
    row = asdict(shown)
    row["holders"] = sorted(shown.holders)
    row.update(state=_state(shown, reg, now), journal=journal, product_id=shown.digest[:15],
               held_here=shown.held_by(reg.hostname))
    return row


def _list(args: argparse.Namespace) -> int:
    reg = _registry(args)
    cached = {c.lun_id: c for c in reg.journal()}
    live = {c.lun_id: c for c in reg.list()}
    now = time.time()
    rows = [_row(live.get(i), cached.get(i), reg, now) for i in sorted(set(cached) | set(live))]
    if args.json:
        print(json.dumps({"host": reg.hostname, "allocation": reg.settings.allocation.value,
                          "claims": rows}, indent=1))
        return 0
    print(f"{'ID':>5}  {'STATE':<10} {'PRODUCT':<15}  {'JOURNAL':<15} {'HOLDERS':<24} KEY")
    for r in rows:
        holders = ",".join(r["holders"]) or "-"
        print(f"{r['lun_id']:>5}  {r['state']:<10} {r['product_id']:<15}  {r['journal']:<15} "
              f"{holders:<24} {r['identity_key']}")
    return 0


def _live(args: argparse.Namespace) -> tuple[dict[int, str], dict[str, str]] | None:
    """From the running marshal: LUN id -> backstore name, and the backstore names of
    desired images not exported yet -> their state; None if it cannot be asked."""
    url = (args.url or default_url(load(args.config).config)).rstrip("/")
    try:
        with urllib.request.urlopen(f"{url}/v1/target", timeout=10) as r:
            doc = json.loads(r.read())
        pending = {str(p["key"]): f"{p['state']}" + (f": {p['reason']}" if p["reason"] else "")
                   for p in doc.get("pending", [])}
        return {int(lun["lun_id"]): str(lun["key"]) for lun in doc["luns"]}, pending
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"sbpsctl luns verify: cannot read the live target from {url} ({exc}); "
              "checking the claims held in the journal instead", file=sys.stderr)
        return None


def _exported(args: argparse.Namespace, reg: ClaimRegistry
              ) -> tuple[dict[int, str], dict[str, str], str]:
    """(exported LUN id -> name, pending backstore name -> state, where they came from)."""
    if not args.exported:
        live = _live(args)
        if live is not None:
            return live[0], live[1], "target"
        return {lun_id: digest for digest, lun_id in reg.held().items()}, {}, "journal"
    try:
        with open(args.exported, encoding="utf-8") as fh:
            raw = json.load(fh)
        return {int(k): str(v) for k, v in raw.items()}, {}, args.exported
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(args.exported, "exported", f"expected a JSON object of LUN id to "
                         f"digest: {exc}") from exc


def _verify(args: argparse.Namespace) -> int:
    reg = _registry(args)
    exported, pending, source = _exported(args, reg)
    problems = reg.verify(exported, pending)
    waiting = {lun_id: pending[digest[:15]] for digest, lun_id in reg.held().items()
               if digest[:15] in pending and lun_id not in exported}
    if args.json:
        print(json.dumps({"host": reg.hostname, "exported": len(exported),
                          "exported_source": source,
                          "pending": {str(k): v for k, v in sorted(waiting.items())},
                          "problems": [asdict(p) for p in problems]}, indent=1))
    else:
        for lun_id, state in sorted(waiting.items()):
            print(f"LUN {lun_id}: held for an image not exported yet ({state})",
                  file=sys.stderr)
        for p in problems:
            print(f"{p.obj}: {p.field}: {p.reason} [{p.code}]")
        print(f"{len(exported)} exported LUNs checked, {len(problems)} problems",
              file=sys.stderr)
    return 1 if problems else 0


def _release(args: argparse.Namespace) -> int:
    reg = _registry(args, writes_hash_journal=True)
    claim = reg.release_id(args.lun_id, force=args.force)
    if args.json:
        row = asdict(claim)
        row["holders"] = sorted(claim.holders)
        print(json.dumps(row, indent=1))
    else:
        print(f"LUN {claim.lun_id} ({claim.identity_key}) released; free for another "
              f"image after {reg.settings.quarantine:.0f} s of quarantine")
    return 0
