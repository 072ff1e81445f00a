"""``sbpsctl bootparams IMAGE_ID`` and ``sbpsctl bootparams parse TEXT``.

Owns these two commands: the first prints the kernel parameters (or a BOS boot set, a
SAT bootprep entry, JSON) that boot an IMS image through SBPS; the second checks a
``root=`` parameter and prints the serial and WWID the device must have. Grammar and
formats belong to ``sbps.bootparams`` and ``sbps.bootformats``; reading the image to
``ImageSource``. Must not print secrets.

Both forms share one subparser: a first word ``parse`` selects the parser, anything else
is an image id (IMS ids are UUIDs, never ``parse``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Any

from sbps import bootformats, bootparams
from sbps.cli._bootparams_source import ImageSource, ImsS3Source
from sbps.config import Config, load
from sbps.errors import ConfigError, InputError

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


@dataclass(frozen=True)
class ImageRequest:
    """What ``bootparams IMAGE_ID`` was asked for, resolved against the configuration."""

    ims_id: str
    srv_name: str
    iqn_prefix: str
    timeout: int
    ramroot: bool
    fmt: str
    name: str = ""
    configuration: str = ""


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


async def produce(source: ImageSource, req: ImageRequest) -> tuple[str, list[str]]:
    """The requested output for one image, and warnings for stderr."""
    warnings: list[str] = []
    record = await source.image(req.ims_id)
    manifest = await source.manifest(record)
    params = bootformats.for_image(record, manifest, srv_name=req.srv_name,
                                   iqn_prefix=req.iqn_prefix, timeout=req.timeout,
                                   ramroot=req.ramroot)
    text = ""
    if req.fmt == "cmdline":
        url = bootformats.boot_parameters_url(manifest)
        if url is None:
            warnings.append(f"image {record.ims_id}: the manifest has no boot-parameters "
                            "artifact; printing root= alone")
        else:
            text = await source.text(url)
    out = bootformats.render(req.fmt, params, record, text, name=req.name,
                             configuration=req.configuration)
    return out, warnings


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
    out, warnings = asyncio.run(produce(ImsS3Source(cfg), req))
    for w in warnings:
        print(f"sbpsctl bootparams: warning: {w}", file=sys.stderr)
    sys.stdout.write(out)
    return 0
