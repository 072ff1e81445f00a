"""``sbpsctl``, the admin CLI: argument parsing and subcommand discovery.

Owns the top-level parser only. Each command lives in its own module in this package and
exposes ``register(subparsers)``, which adds its subparser(s) and sets ``func`` to a
function taking the parsed arguments and returning an exit code. Modules are found at run
time, so an issue that adds a command adds a file and edits nothing shared.

Exit codes: 0 success, 1 the command ran and found a problem, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from sbps import __version__
from sbps.core.errors import ConfigError, SbpsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sbpsctl", description="Administer the SBPS marshal and its images.")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="configuration file (default /etc/sbps/marshal.toml)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"sbpsctl: configuration error: {exc}", file=sys.stderr)
        return 2
    except SbpsError as exc:
        print(f"sbpsctl: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
