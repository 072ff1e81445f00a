"""``sbpsctl config show|check|example``: inspect and validate configuration.

Owns these subcommands only; loading and rendering belong to ``sbps.config``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sbps.config import load
from sbps.config.render import example, show_json, show_text
from sbps.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="show, check or generate the configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    show = csub.add_parser("show", help="print the effective configuration and its sources")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_show)
    check = csub.add_parser("check", help="validate a configuration file (exit 0 or 2)")
    check.add_argument("file", nargs="?", help="file to check (default: --config or "
                       "/etc/sbps/marshal.toml)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=_check)
    ex = csub.add_parser("example", help="print the documented example configuration")
    ex.set_defaults(func=_example)


def _show(args: argparse.Namespace) -> int:
    loaded = load(args.config)
    sys.stdout.write(show_json(loaded) if args.json else show_text(loaded))
    return 0


def _check(args: argparse.Namespace) -> int:
    path = args.file or args.config
    try:
        loaded = load(path)
    except ConfigError as exc:
        if args.json:
            print(json.dumps({"valid": False, "key": exc.key, "value": repr(exc.value),
                              "message": str(exc)}))
        else:
            print(f"invalid: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"valid": True, "path": loaded.path,
                          "warnings": list(loaded.warnings)}))
    else:
        for w in loaded.warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"{loaded.path}: valid")
    return 0


def _example(args: argparse.Namespace) -> int:
    sys.stdout.write(example())
    return 0
