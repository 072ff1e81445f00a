"""``sbpsctl demo [--check] [--keep]``: the whole stack on loopback (see ``sbps.dev.demo``).

Owns the command only. ``--check`` runs every step and its checks, then stops and exits
0 or 1 (CI runs it); without it the stack keeps serving until Ctrl-C.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run S3, IMS, tgtd, DNS and the marshal on loopback, "
                       "export a freshly built image and read it back")
    p.add_argument("--check", action="store_true", help="stop after the checks; exit 0 or 1")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from sbps.dev.demo import Demo  # needs the development servers; only for this command

    return Demo(keep=args.keep).run(check=args.check)
