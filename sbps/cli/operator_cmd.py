"""``sbpsctl sessions`` and ``sbpsctl why IMAGE``: what an operator asks first.

Owns these two commands. ``sessions`` shows the initiators logged in now (the target's own
session table, through ``GET /v1/sessions``) with each LUN's read counters, per initiator
where the target counts that. ``why`` shows why an image is or is not exported on this
worker (``GET /v1/why/{image}``: catalog, staging and verification, claim, conflicts, gate,
export, with the last error); for an image the daemon does not know it asks IMS itself (with
the admin's configuration) whether the record exists and what the label rule says. Must not
change anything.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sbps.cli._api import add_common, api, config_of, dump, table
from sbps.config import Config
from sbps.core.errors import SbpsError
from sbps.sources.catalog import ImsClient, make_auth
from sbps.sources.catalog.rules import Decision, decide_record

_MARK = {True: "ok", False: "NO", None: ".."}


def register(sub: Any) -> None:
    s = sub.add_parser("sessions", help="the initiators logged in now, with what they read")
    add_common(s)
    s.set_defaults(func=_sessions)
    w = sub.add_parser("why", help="why an image is or is not exported on this worker")
    w.add_argument("image", metavar="IMAGE", help="an IMS image id, an identity key or a "
                   "backstore name")
    w.add_argument("--no-ims", action="store_true", help="do not ask IMS about an image the "
                   "daemon does not know")
    add_common(w)
    w.set_defaults(func=_why)


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


def _sessions(args: argparse.Namespace) -> int:
    doc = api(args).get("/v1/sessions", admin=True)
    if args.json:
        print(dump(doc))
        return 0
    rows = []
    for s in doc["sessions"]:
        who = s["initiator"] + (f" ({', '.join(s['addresses'])})" if s["addresses"] else "")
        if s["luns"] is None:
            rows.append((who, "(not counted per initiator)", "-", "-"))
        for lun in s["luns"] or []:
            rows.append((who, f"{lun['lun_id']} {lun['key'] or ''}".strip(),
                         _mib(lun["read_bytes"]), lun["commands"]))
    print(f"{doc['iqn']} ({doc['backend']}): {len(doc['sessions'])} initiator(s) logged in")
    if rows:
        print(table(("initiator", "lun", "read", "commands"), rows))
    print(f"\nper LUN (all initiators, counters read at {doc['counters_at']}):")
    print(table(("lun", "key", "read", "commands"),
                [(x["lun_id"], x["key"], _mib(x["read_bytes"]), x["commands"])
                 for x in doc["luns"]]))
    return 0


async def _ask_ims(cfg: Config, image_id: str) -> dict[str, Any]:
    """Whether IMS has the record and what the label rule says of it."""
    async with ImsClient(cfg.catalog, make_auth(cfg.catalog), retries=0) as ims:
        try:
            record = await ims.get_record(image_id)
        except SbpsError as exc:
            return {"step": "label", "ok": False, "detail": f"IMS: {exc}"}
    decision = decide_record(record, cfg.catalog)
    if decision.projected:
        detail = (f"IMS record {image_id} is labelled ({cfg.catalog.label_key}); the daemon "
                  "has not taken it into its catalog: see the catalog problems above, or "
                  "wait for the next pass")
    elif decision is Decision.UNTAGGED:
        detail = (f"IMS record {image_id} has no metadata and catalog.untagged = "
                  f"{cfg.catalog.untagged}")
    else:
        value = record.metadata.get(cfg.catalog.label_key) if record.has_metadata else None
        detail = (f"IMS record {image_id} is not labelled: metadata "
                  f"{cfg.catalog.label_key} is {value!r}, the rule wants \"true\" "
                  f"(sbpsctl image label {image_id})")
    return {"step": "label", "ok": decision.projected, "detail": detail}


def _why(args: argparse.Namespace) -> int:
    doc = api(args).get(f"/v1/why/{args.image}", admin=True)
    if not doc["known"] and not args.no_ims:
        doc["steps"].append(asyncio.run(_ask_ims(config_of(args), args.image)))
    if args.json:
        print(dump(doc))
        return 0 if doc["exported"] else 1
    verdict = "exported" if doc["exported"] else "NOT exported"
    print(f"{args.image}: {verdict}" + (f" (state {doc['state']})" if doc["state"] else ""))
    for step in doc["steps"]:
        print(f"  [{_MARK[step['ok']]:>2}] {step['step']:<9} {step['detail']}")
    if doc.get("last_error"):
        print(f"  last error: {doc['last_error']}")
    return 0 if doc["exported"] else 1
