"""``sbpsctl status|images|plan|reconcile``: what the running daemon sees and does.

Owns these commands' output (tables, or ``--json``). They call the daemon's HTTP API
through ``_api``; admin calls send the admin token. Must not compute state locally.
"""

from __future__ import annotations

import argparse
from typing import Any

from sbps.cli._api import add_common, api, dump, table
from sbps.core.errors import PermanentError


def register(sub: Any) -> None:
    for name, func, text in (
            ("status", _status, "the daemon's state: readiness, gate, target, images"),
            ("images", _images, "the image catalog this worker serves"),
            ("plan", _plan, "the actions a pass would take now (dry run)")):
        p = sub.add_parser(name, help=text)
        add_common(p)
        p.set_defaults(func=func)
    p = sub.add_parser("reconcile", help="trigger a reconcile pass")
    add_common(p)
    p.add_argument("--wait", action="store_true", help="wait for the pass and show its "
                   "report (exit 1 if it had errors)")
    p.set_defaults(func=_reconcile)


def _status(args: argparse.Namespace) -> int:
    client = api(args)
    _, ready = client.call("GET", "/readyz", ok=(503,))
    target = client.get("/v1/target")
    cat = client.get("/v1/images")
    state = client.get("/debug/state", admin=True)
    doc = {"ready": ready, "target": target, "images": cat["images"],
           "passes": state["passes"], "last_pass_at": state.get("last_pass_at"),
           "last_success_at": state.get("last_success_at"),
           "errors": state.get("errors", []), "degraded": state.get("degraded", []),
           "held": state["held"]}
    if args.json:
        print(dump(doc))
        return 0 if ready["ready"] else 1
    counts: dict[str, int] = {}
    for img in cat["images"]:
        counts[img["state"]] = counts.get(img["state"], 0) + 1
    print(f"target     {target['iqn']} ({target['backend']}), portal group "
          f"{'enabled' if target['tpg_enabled'] else 'disabled'}, "
          f"portals {', '.join(target['portals']) or '-'}")
    print(f"ready      {'yes' if ready['ready'] else 'no: ' + '; '.join(ready['reasons'])}")
    print(f"gate       {'open' if target['gate_open'] else 'closed'}, serving "
          f"{'yes' if target['serving'] else 'no'}, DNS "
          f"{'registered' if target['dns_registered'] else 'not registered'}")
    print(f"passes     {doc['passes']}, last {doc['last_pass_at'] or '-'}, last success "
          f"{doc['last_success_at'] or '-'}")
    print(f"images     {len(target['luns'])} LUNs; " +
          (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
    for line in doc["errors"]:
        print(f"error      {line}")
    if doc["held"]:
        print(f"held       {', '.join(doc['held'])}")
    return 0 if ready["ready"] else 1


def _images(args: argparse.Namespace) -> int:
    cat = api(args).get("/v1/images")
    if args.json:
        print(dump(cat))
        return 0
    rows = [(i["key"], i["lun_id"], i["state"], i["kind"], i["arch"], i["ims_id"],
             i["name"], i["size"], i["reason"] if i["state"] == "failed" else i["wwid"])
            for i in sorted(cat["images"], key=lambda i: (i["lun_id"] or 0, i["key"]))]
    print(f"{cat['iqn']}  portals {', '.join(cat['portals']) or '-'}")
    print(table(("key", "lun", "state", "kind", "arch", "ims id", "name", "size",
                 "wwid / reason"), rows))
    return 0


def _plan(args: argparse.Namespace) -> int:
    plan = api(args).get("/debug/plan", admin=True)
    if args.json:
        print(dump(plan))
        return 0
    if not plan["actions"]:
        print("no actions: the target matches the desired state")
    else:
        print(table(("kind", "subject", "reason"),
                    [(a["kind"], a["subject"], a["reason"]) for a in plan["actions"]]))
    for n in plan["notes"]:
        print(f"note: {n['subject']}: {n['code']}: {n['message']}")
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    client = api(args)
    path = "/v1/reconcile" + ("?wait=1" if args.wait else "")
    timeout = max(args.timeout, 600.0) if args.wait else args.timeout
    _, doc = client.call("POST", path, admin=True, timeout=timeout)
    if doc is None:
        raise PermanentError("POST /v1/reconcile answered without a body")
    if args.json:
        print(dump(doc))
    elif not args.wait:
        print(f"pass {doc['pass']} requested")
    else:
        results = doc["report"]["results"]
        print(f"pass {doc['pass']} finished: {'ok' if doc['ok'] else 'with errors'}, "
              f"{len(results)} actions, {doc['report']['target_writes']} target writes")
        if results:
            print(table(("kind", "subject", "result", "reason / error"),
                        [(r["kind"], r["subject"], "ok" if r["ok"] else
                          "skipped" if r["skipped"] else "FAILED",
                          r["reason"] if r["ok"] else r["message"]) for r in results]))
        for e in doc["errors"]:
            print(f"error: {e}")
    return 0 if not args.wait or doc.get("ok") else 1
