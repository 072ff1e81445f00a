"""Output formats of an image's SBPS boot parameters: command line, BOS, SAT bootprep, JSON.

Owns turning an image record, its manifest and its boot-parameters artifact (all passed
in, already parsed into ``sbps.core.model``) into the text an admin pastes somewhere. The
grammar itself belongs to ``bootparams``. Pure; must not do I/O and must not fetch what
it is not given.

BOS builds ``root=`` itself from a boot set's ``path``/``etag`` (the *manifest*, as IMS
links it) and ``rootfs_provider_passthrough``; the BOS and bootprep fragments therefore
carry the manifest, while ``root=`` and the identity use the rootfs artifact in it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sbps.core import identity
from sbps.core.errors import InputError
from sbps.core.model import Arch, ArtifactType, ImageRecord, Manifest, S3Url
from sbps.publish.boot import params as bootparams
from sbps.publish.boot.params import BootParams

FORMATS = ("cmdline", "bos", "bootprep", "json")
ROOTFS_PROVIDER = "sbps"
DEFAULT_BOOT_SET = "compute"
DEFAULT_ROLES = ("Compute",)
# BOS and HSM name architectures differently from IMS.
_BOS_ARCH = {Arch.X86_64: "X86", Arch.AARCH64: "ARM"}


def _manifest_obj(record: ImageRecord) -> str:
    return f"manifest {record.manifest}" if record.manifest else f"image {record.ims_id}"


def for_image(record: ImageRecord, manifest: Manifest, *, srv_name: str,
              iqn_prefix: str = identity.IQN_PREFIX,
              timeout: int = bootparams.DEFAULT_TIMEOUT, ramroot: bool = False) -> BootParams:
    """The boot parameters of an image: its rootfs artifact's path and etag."""
    rootfs = manifest.first(ArtifactType.ROOTFS)
    obj = _manifest_obj(record)
    if rootfs is None:
        raise InputError(obj, "artifacts", f"no {ArtifactType.ROOTFS.value} artifact")
    if not rootfs.etag:
        raise InputError(obj, "artifacts[rootfs].link.etag", "missing or empty: the rootfs "
                         "identity needs it (the image cannot be booted through SBPS)")
    return BootParams(path=rootfs.url, etag=rootfs.etag, srv_name=srv_name,
                      iqn_prefix=iqn_prefix, timeout=timeout, ramroot=ramroot)


def boot_parameters_url(manifest: Manifest) -> S3Url | None:
    """Where the image's boot-parameters artifact is, if it has one."""
    artifact = manifest.first(ArtifactType.BOOT_PARAMETERS)
    return artifact.url if artifact else None


def cmdline(params: BootParams, boot_parameters: str = "") -> str:
    """The image's own kernel parameters followed by ``root=``.

    A ``root=`` already in the artifact is dropped: ours must be the one that boots, and
    two of them on one line only confuse whoever reads it.
    """
    words = [w for w in bootparams.tokens(boot_parameters) if not w.startswith("root=")]
    return " ".join([*words, bootparams.generate(params)])


def _boot_set(params: BootParams, record: ImageRecord, roles: Sequence[str],
              with_location: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"arch": _BOS_ARCH[record.arch]}
    if with_location:
        if record.manifest is None:
            raise InputError(f"image {record.ims_id}", "link", "no manifest link")
        if not record.manifest_etag:
            raise InputError(f"image {record.ims_id}", "link.etag", "missing: BOS needs "
                             "the manifest's etag")
        out.update({"type": "s3", "path": str(record.manifest),
                    "etag": record.manifest_etag})
    out.update({"node_roles_groups": list(roles), "rootfs_provider": ROOTFS_PROVIDER,
                "rootfs_provider_passthrough": bootparams.passthrough(params)})
    return out


def bos(params: BootParams, record: ImageRecord, *, boot_set: str = DEFAULT_BOOT_SET,
        roles: Sequence[str] = DEFAULT_ROLES) -> str:
    """A BOS session template ``boot_sets`` fragment (JSON) that boots the image via SBPS.

    No ``kernel_parameters``: BOS appends them to the image's own boot-parameters
    artifact, so the image already supplies what it needs.
    """
    body = {"boot_sets": {boot_set: _boot_set(params, record, roles, with_location=True)}}
    return json.dumps(body, indent=2) + "\n"


def _y(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar: no quoting rules to get wrong.
    return json.dumps(value)


def bootprep(params: BootParams, record: ImageRecord, *, name: str = "",
             configuration: str = "", boot_set: str = DEFAULT_BOOT_SET,
             roles: Sequence[str] = DEFAULT_ROLES) -> str:
    """A SAT bootprep ``session_templates`` entry (YAML) for the image, by IMS id.

    SAT fills ``type``, ``path`` and ``etag`` from the IMS image itself.
    """
    bs = _boot_set(params, record, roles, with_location=False)
    lines = [
        "session_templates:",
        f"- name: {_y(name or record.name)}",
        "  image:",
        "    ims:",
        f"      id: {_y(record.ims_id)}",
        f"  configuration: {_y(configuration)}",
        "  bos_parameters:",
        "    boot_sets:",
        f"      {_y(boot_set)}:",
        f"        arch: {_y(bs['arch'])}",
        "        node_roles_groups:",
        *(f"        - {_y(role)}" for role in roles),
        f"        rootfs_provider: {_y(bs['rootfs_provider'])}",
        f"        rootfs_provider_passthrough: {_y(bs['rootfs_provider_passthrough'])}",
    ]
    return "\n".join(lines) + "\n"


def fields(params: BootParams) -> dict[str, Any]:
    """Every field, the ``root=`` text and the identity the target will present."""
    ident = params.identity
    return {
        "root": bootparams.generate(params),
        "path": str(params.path),
        "etag": params.etag,
        "transport": params.transport,
        "schema": params.schema,
        "iqn_prefix": params.iqn_prefix,
        "srv_name": params.srv_name,
        "network": params.network,
        "domain": params.domain,
        "timeout": params.timeout,
        "ramroot": params.ramroot,
        "rootfs_provider": ROOTFS_PROVIDER,
        "rootfs_provider_passthrough": bootparams.passthrough(params),
        "identity_key": ident.key,
        "product_id": ident.product_id,
        "serial": ident.serial,
        "wwid": ident.wwid,
    }


def to_json(params: BootParams, record: ImageRecord | None = None) -> str:
    body = fields(params)
    if record is not None:
        body["image"] = {"id": record.ims_id, "name": record.name, "arch": record.arch.value,
                         "manifest": str(record.manifest) if record.manifest else None,
                         "manifest_etag": record.manifest_etag}
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def to_text(params: BootParams) -> str:
    """``name: value`` lines for people."""
    width = max(len(k) for k in fields(params))
    return "".join(f"{k:<{width}}  {str(v).lower() if isinstance(v, bool) else v}\n"
                   for k, v in fields(params).items())


def render(fmt: str, params: BootParams, record: ImageRecord, boot_parameters: str = "", *,
           name: str = "", configuration: str = "") -> str:
    """One of ``FORMATS`` for an image."""
    if fmt == "cmdline":
        return cmdline(params, boot_parameters) + "\n"
    if fmt == "bos":
        return bos(params, record)
    if fmt == "bootprep":
        return bootprep(params, record, name=name, configuration=configuration)
    if fmt == "json":
        return to_json(params, record)
    raise ValueError(f"unknown format {fmt!r}; one of " + ", ".join(FORMATS))
