"""Command line: ``python -m configfs mount DIR [--control SOCKET]`` (foreground).

Owns: argument parsing and logging setup only. Must not: hold emulation logic.
"""

from __future__ import annotations

import argparse
import logging

from .mount import run_foreground


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m configfs",
                                     description="FUSE emulation of the LIO configfs tree")
    sub = parser.add_subparsers(dest="command", required=True)
    mount = sub.add_parser("mount", help="mount in the foreground until unmounted or SIGTERM")
    mount.add_argument("directory", help="mount point; plays the role of /sys/kernel/config")
    mount.add_argument("--control", help="path of the Unix control socket to create")
    mount.add_argument("--ready-fd", type=int, help="write a ready line to this fd once mounted")
    mount.add_argument("--debug", action="store_true", help="FUSE debug output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    return run_foreground(args.directory, args.control, args.ready_fd, args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
