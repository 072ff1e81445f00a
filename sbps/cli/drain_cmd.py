"""``sbpsctl drain [--undo] [--no-wait]``: take this worker out of service by hand, or back.

Owns this command only; the daemon does the work in the safe order (DNS records withdrawn
first, the target disabled after the drain delay) and this command shows which initiators
are still connected and waits for it. Must not touch the target or DNS itself.
"""

from __future__ import annotations

import argparse
from typing import Any

from sbps.cli._api import add_common, api, dump


def register(sub: Any) -> None:
    p = sub.add_parser("drain", help="close this worker (DNS first, then the target); "
                       "--undo reopens it")
    p.add_argument("--undo", action="store_true", help="reopen the worker")
    p.add_argument("--no-wait", action="store_true", help="return at once instead of "
                   "waiting until the target is disabled")
    add_common(p)
    p.set_defaults(func=_drain)


def _drain(args: argparse.Namespace) -> int:
    on = "0" if args.undo else "1"
    wait = "0" if args.no_wait else "1"
    _, doc = api(args).call("POST", f"/v1/drain?on={on}&wait={wait}", admin=True)
    if args.json:
        print(dump(doc))
        return 0
    if args.undo:
        print("reopened: the target serves again and DNS is re-registered by the next pass")
        return 0
    state = "still serving (drain delay running)" if doc["serving"] else "target disabled"
    print(f"drained: DNS {'still registered' if doc['dns_registered'] else 'withdrawn'}, "
          f"{state}")
    sessions = doc["sessions"]
    print(f"{len(sessions)} initiator(s) still connected" + (":" if sessions else ""))
    for name in sessions:
        print(f"  {name}")
    return 0
