"""``sbpsctl image build|check|label`` and the ``image`` group other modules extend.

Owns the ``image`` subcommand group and three of its actions. Other actions (``hold``,
``release``, ``retire-now``, ``promote``) live in their own modules and join the group
through ``add_image_command``, which finds or creates the group on the parser it is
given, so discovery order does not matter and nothing global is kept::

    # sbps/cli/image_admin.py
    from sbps.cli.image import add_image_command

    def register(sub):
        add_image_command(sub, "hold", _add_hold)   # _add_hold(actions) adds "hold"

    def _add_hold(actions):
        p = actions.add_parser("hold", help="...")
        p.set_defaults(func=_hold)

Exit codes: 0 done, 1 the command ran and found a problem (``check --strict`` with
missing required pieces, a failed upload), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sbps.cli import _image_publish, _image_source
from sbps.config import Config, load
from sbps.core.errors import InputError
from sbps.core.model import Arch, ArtifactType
from sbps.imagebuild import check, pipeline
from sbps.sources.catalog import ImsClient, make_auth

_ARCHES = tuple(a.value for a in Arch)
_GROUP_ATTR = "_sbps_image_actions"


def image_actions(sub: Any) -> Any:
    """The ``image`` group's subparsers action, created on first use."""
    parser = sub.choices.get("image")
    if parser is None:
        parser = sub.add_parser("image", help="build, check, label and manage images")
        actions = parser.add_subparsers(dest="image_command", metavar="ACTION")
        actions.required = True
        setattr(parser, _GROUP_ATTR, actions)
    return getattr(parser, _GROUP_ATTR)


def add_image_command(sub: Any, name: str, register_fn: Callable[[Any], None]) -> None:
    """Add ``sbpsctl image NAME``: ``register_fn(actions)`` adds the parser ``name``."""
    actions = image_actions(sub)
    if name in actions.choices:
        raise ValueError(f"sbpsctl image {name} is registered twice")
    register_fn(actions)
    if name not in actions.choices:
        raise ValueError(f"register_fn for sbpsctl image {name} did not add it")


def register(sub: Any) -> None:
    add_image_command(sub, "build", _add_build)
    add_image_command(sub, "check", _add_check)
    add_image_command(sub, "label", _add_label)


def _add_build(actions: Any) -> None:
    p = actions.add_parser("build", help="build a squashfs image from a tree, tar or OCI "
                           "image, upload it as IMS does, register and label it")
    p.add_argument("source", metavar="SOURCE", help="directory, tar archive, OCI image "
                   "layout (directory or archive) or docker save archive")
    p.add_argument("--name", required=True, help="IMS image name")
    p.add_argument("--arch", default="x86_64", help="x86_64 (default) or aarch64")
    p.add_argument("--kernel", metavar="FILE", help="kernel (default: /boot of the image)")
    p.add_argument("--initrd", metavar="FILE", help="initrd (default: /boot of the image)")
    p.add_argument("--boot-params", dest="boot_params", metavar='"..."',
                   help="kernel parameters stored as the boot_parameters artifact")
    p.add_argument("--compression", default="gzip", help="xz, zstd or gzip (default)")
    p.add_argument("--label", action=argparse.BooleanOptionalAction, default=True,
                   help="set the catalog.label_key label so SBPS projects it (default on)")
    p.add_argument("--strict", action="store_true", help="refuse to upload an image that "
                   "lacks a required piece")
    p.add_argument("--workdir", metavar="DIR", help="where to unpack and build "
                   "(default: the system temporary directory)")
    p.add_argument("--dry-run", action="store_true", help="print every step, do nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_build)


def _add_check(actions: Any) -> None:
    p = actions.add_parser("check", help="what an image needs to boot through SBPS, per "
                           "maturity level, without booting it")
    p.add_argument("target", metavar="SOURCE|IMAGE_ID", help="directory, tar, OCI layout "
                   "or archive, squashfs file, or an IMS image id")
    p.add_argument("--arch", default="x86_64", help="platform to pick from an OCI index")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a required piece is missing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_check)


def _add_label(actions: Any) -> None:
    p = actions.add_parser("label", help="set (or --remove) the SBPS label of an IMS image, "
                           "or another metadata label such as its tenant")
    p.add_argument("image_id", metavar="ID", help="the IMS image id")
    p.add_argument("label", metavar="KEY=VALUE", nargs="?", help="a metadata label to set "
                   "(e.g. sbps-tenant=red); default: catalog.label_key=true")
    p.add_argument("--remove", action="store_true", help="remove the label (give KEY or "
                   "KEY=VALUE to remove another label)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_label)


def _say(enabled: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if enabled:
            print(f"sbpsctl image build: {message}", file=sys.stderr)
    return say


def _request(args: argparse.Namespace) -> pipeline.BuildRequest:
    return pipeline.BuildRequest(
        source=args.source, name=args.name, arch=args.arch, kernel=args.kernel,
        initrd=args.initrd, boot_parameters=args.boot_params,
        compression=args.compression, workdir=args.workdir)


def _build(args: argparse.Namespace) -> int:
    req = _request(args)
    src = pipeline.validate(req)
    cfg: Config = load(args.config).config
    if args.dry_run:
        plan = pipeline.steps(req, src) + _image_publish.steps(req, cfg, args.label)
        if args.json:
            print(json.dumps({"dry_run": True, "steps": plan}, indent=1))
        else:
            for n, step in enumerate(plan, 1):
                print(f"{n:2}. {step}")
        return 0
    say = _say(not args.json)
    with pipeline.prepare(req, say) as built:
        if not args.json:
            sys.stdout.write(built.report.to_text())
        missing = built.report.missing_required()
        if args.strict and missing:
            print(f"sbpsctl image build: --strict: not uploading; missing "
                  f"{', '.join(f.key for f in missing)}", file=sys.stderr)
            if args.json:
                print(json.dumps({"uploaded": False, "check": built.report.to_dict()},
                                 indent=1))
            return 1
        say(f"built {built.size} bytes in {built.seconds:.1f}s; digest {built.digest[:16]}")
        pub = asyncio.run(_image_publish.publish(cfg, req, built, label=args.label,
                                                 progress=not args.json))
        fields, text = _image_publish.boot_parameters(cfg, req, pub)
        if args.json:
            print(json.dumps(_result(req, built, pub, fields), indent=1))
            return 0
    state = ("already built and uploaded; nothing uploaded" if pub.already_complete else
             f"uploaded ({len(pub.upload.reused) if pub.upload else 0} objects reused)")
    print(f"image id: {pub.image_id} ({state})")
    print(f"label: {pub.labelled}=true" if pub.labelled else "label: not set (--no-label)")
    print("boot parameters:")
    sys.stdout.write(text)
    return 0


def _result(req: pipeline.BuildRequest, built: pipeline.Prepared,
            pub: _image_publish.Published, bootparams: dict[str, Any]) -> dict[str, Any]:
    rootfs = pub.manifest.first(ArtifactType.ROOTFS)
    return {
        "image_id": pub.image_id, "name": req.name, "arch": req.arch,
        "digest": built.digest, "size": built.size,
        "record_reused": pub.record_reused, "already_complete": pub.already_complete,
        "reused_objects": list(pub.upload.reused) if pub.upload else [],
        "manifest": {"path": pub.manifest_url, "etag": pub.manifest_etag},
        "rootfs": {"path": str(rootfs.url), "etag": rootfs.etag, "md5": rootfs.md5}
        if rootfs else None,
        "kernel": built.kernel_origin, "initrd": built.initrd_origin,
        "label": pub.labelled, "boot_parameters": bootparams,
        "check": built.report.to_dict()}


def _check(args: argparse.Namespace) -> int:
    if args.arch not in _ARCHES:
        raise InputError("image check", "--arch", f"{args.arch!r} is not one of "
                         + ", ".join(_ARCHES))

    async def run() -> check.CheckReport:
        cfg = None
        if not _path_like(args.target):
            cfg = load(args.config).config
        async with _image_source.open_view(args.target, args.arch, cfg=cfg) as (view, art):
            return await asyncio.get_running_loop().run_in_executor(None, check.run, view,
                                                                    art)

    report = asyncio.run(run())
    sys.stdout.write(report.to_json() if args.json else report.to_text())
    return 1 if args.strict and report.missing_required() else 0


def _path_like(target: str) -> bool:
    return Path(target).exists() or "/" in target or target.startswith(".")


def _label(args: argparse.Namespace) -> int:
    cfg: Config = load(args.config).config
    key, value = cfg.catalog.label_key, "true"
    if args.label:
        key, sep, value = args.label.partition("=")
        if not key or (not sep and not args.remove) or (sep and not value):
            raise InputError(args.image_id, "KEY=VALUE", f"{args.label!r}: expected a "
                             "non-empty key and value, such as sbps-tenant=red")

    async def run() -> Any:
        async with ImsClient(cfg.catalog, make_auth(cfg.catalog)) as ims:
            return await ims.patch_label(args.image_id, key, None if args.remove else value)

    try:
        record = asyncio.run(run())
    except ValueError as exc:
        raise InputError(args.image_id, "ID", str(exc)) from exc
    if args.json:
        print(json.dumps(record, indent=1))
    else:
        print(f"image {args.image_id}: label {key} " + ("removed" if args.remove
                                                         else f"set to {value!r}"))
    return 0
