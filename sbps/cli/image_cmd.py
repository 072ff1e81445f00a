"""``sbpsctl image hold|release|retire-now|promote KEY``: admin levers on one image version.

Owns these subcommands of ``image``; they call the daemon's admin API. ``hold`` keeps a
retiring image's LUN until released; ``retire-now`` removes a retiring LUN without waiting
for it to go idle. Must not touch the target directly.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

from sbps.cli._api import add_common, api, dump
from sbps.cli.image import add_image_command
from sbps.reconcile.commands import ImageAction

ACTIONS = {ImageAction.HOLD: "never retire this image's LUN until released",
           ImageAction.RELEASE: "undo hold",
           ImageAction.RETIRE_NOW: "remove a retiring image's LUN now, even if it is still "
                                   "read",
           ImageAction.PROMOTE: "serve a re-uploaded PE image's new content (the old LUN "
                                "goes first)"}


def register(sub: Any) -> None:
    """Join the ``image`` group that ``sbps.cli.image`` owns."""
    for action, text in ACTIONS.items():
        add_image_command(sub, action.value, functools.partial(_add, action.value, text))


def _add(action: str, text: str, isub: Any) -> None:
    a = isub.add_parser(action, help=text)
    a.add_argument("key", help="the image key (product id, 15 hex digits)")
    add_common(a)
    a.set_defaults(func=_act, action=action)


def _act(args: argparse.Namespace) -> int:
    _, doc = api(args).call("POST", f"/v1/images/{args.key}/{args.action}", admin=True)
    if args.json:
        print(dump(doc))
    elif args.action == ImageAction.PROMOTE.value:
        print(f"image {doc['key']}: promoted to etag {doc['etag']}; pass {doc['pass']} "
              "removes the old LUN, then the new version is staged and exported")
    else:
        print(f"image {doc['key']}: {doc['action']} done (held: {'yes' if doc['held'] else 'no'}"
              f"); pass {doc['pass']} will apply it")
    return 0
