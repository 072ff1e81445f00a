"""``sbpsctl bootparams IMAGE_ID`` and ``sbpsctl bootparams parse TEXT``.

Owns these two commands: the first prints the kernel parameters (or a BOS boot set, a
SAT bootprep entry, JSON) that boot an IMS image through SBPS; the second checks a
``root=`` parameter and prints the serial and WWID the device must have. Grammar and
formats belong to ``sbps.publish.boot.params`` and ``sbps.publish.boot.formats``; reading the image to
``ImageSource``. Must not print secrets.

Both forms share one subparser: a first word ``parse`` selects the parser, anything else
is an image id (IMS ids are UUIDs, never ``parse``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from sbps.config import Config, load
from sbps.core.errors import ConfigError, InputError
from sbps.publish.boot import formats as bootformats
from sbps.publish.boot import params as bootparams
from sbps.publish.boot.source import CatalogImageSource, ImageRequest, produce
from sbps.sources.catalog import ImsClient, make_auth
from sbps.sources.s3 import S3, allowed_buckets, read_credentials

_IMAGE_OPTIONS = ("network", "system", "domain", "timeout", "ramroot", "format", "name",
                  "configuration")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bootparams", help="boot parameters of an image, or check a root= parameter",
        description="IMAGE_ID: print what boots the IMS image through SBPS. "
        "parse TEXT: check root=sbps-s3:... (or a whole command line, or - for stdin) "
        "and print its fields and the expected serial and WWID; exit 2 if invalid.",
        usage="sbpsctl bootparams IMAGE_ID [options]\n"
              "       sbpsctl bootparams parse TEXT [--json]")
    p.add_argument("words", nargs="+", metavar="IMAGE_ID | parse TEXT",
                   help="an IMS image id, or 'parse' and a root= parameter")
    p.add_argument("--network", choices=bootparams.NETWORKS, default=None,
                   help="network the client reaches the targets on (default hsn)")
    p.add_argument("--system", default=None, help="system name (default node.system_name)")
    p.add_argument("--domain", default=None, help="site domain (default node.site_domain)")
    p.add_argument("--timeout", type=int, default=None,
                   help=f"client discovery timeout in seconds (default "
                   f"{bootparams.DEFAULT_TIMEOUT})")
    p.add_argument("--ramroot", action="store_true", default=None,
                   help="copy the root file system to RAM on the client")
    p.add_argument("--format", choices=bootformats.FORMATS, default=None,
                   help="cmdline (default), a BOS boot set, a SAT bootprep session "
                   "template, or json")
    p.add_argument("--name", default=None, help="bootprep: session template name "
                   "(default: the image name)")
    p.add_argument("--configuration", default=None,
                   help="bootprep: CFS configuration name (default empty)")
    p.add_argument("--json", action="store_true",
                   help="machine-readable output (for IMAGE_ID: --format json)")
    p.set_defaults(func=_run)


def resolve(args: argparse.Namespace, cfg: Config) -> ImageRequest:
    """Flags over configuration; every error names the flag and the key."""
    system = args.system if args.system is not None else cfg.node.system_name
    domain = args.domain if args.domain is not None else cfg.node.site_domain
    where = {"system": ("--system / node.system_name", system),
             "site_domain": ("--domain / node.site_domain", domain)}
    for key, value in where.values():
        if not value:
            raise ConfigError(key, value, "required: give the flag or set the key")
    timeout = bootparams.DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    try:
        bootparams.check_timeout(timeout)
        srv = bootparams.srv_name(args.network or "hsn", system, domain)
        bootparams.check_iqn_prefix(cfg.target.iqn_prefix)
    except InputError as exc:
        key, value = {"timeout": ("--timeout", timeout),
                      "iqn_prefix": ("target.iqn_prefix", cfg.target.iqn_prefix),
                      }.get(exc.field, where.get(exc.field, ("--network", args.network)))
        raise ConfigError(key, value, exc.reason) from exc
    return ImageRequest(
        ims_id=args.words[0], srv_name=srv, iqn_prefix=cfg.target.iqn_prefix,
        timeout=timeout, ramroot=bool(args.ramroot),
        fmt="json" if args.json else (args.format or "cmdline"),
        name=args.name or "", configuration=args.configuration or "")


async def _produce(cfg: Config, req: ImageRequest) -> tuple[str, list[str]]:
    async with ImsClient(cfg.catalog, make_auth(cfg.catalog)) as ims:
        s3 = S3(cfg.s3, read_credentials(cfg.s3.credential_file))
        return await produce(CatalogImageSource(ims, s3, allowed_buckets(cfg.s3)), req)


def _usage(message: str) -> int:
    print(f"sbpsctl bootparams: {message}", file=sys.stderr)
    return 2


def _parse(args: argparse.Namespace) -> int:
    given = [f"--{o}" for o in _IMAGE_OPTIONS if getattr(args, o) is not None]
    if given:
        return _usage(f"{', '.join(given)} only apply to bootparams IMAGE_ID")
    text = " ".join(args.words[1:])
    if text == "-":
        text = sys.stdin.read()
    if not text.strip():
        return _usage("parse needs a root= parameter or a command line")
    try:
        params = bootparams.parse(text)
    except InputError as exc:
        if args.json:
            print(json.dumps({"valid": False, "field": exc.field, "reason": exc.reason,
                              "message": str(exc)}))
        print(f"sbpsctl bootparams: invalid {exc}", file=sys.stderr)
        return 2
    for note in params.notes:
        print(f"sbpsctl bootparams: warning: {note}", file=sys.stderr)
    sys.stdout.write(bootformats.to_json(params) if args.json
                     else bootformats.to_text(params))
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.words[0] == "parse":
        return _parse(args)
    if len(args.words) != 1:
        return _usage("give one IMAGE_ID (or: parse TEXT)")
    if args.json and args.format not in (None, "json"):
        return _usage("--json and --format are exclusive")
    cfg = load(args.config).config
    req = resolve(args, cfg)
    out, warnings = asyncio.run(_produce(cfg, req))
    for w in warnings:
        print(f"sbpsctl bootparams: warning: {w}", file=sys.stderr)
    sys.stdout.write(out)
    return 0
