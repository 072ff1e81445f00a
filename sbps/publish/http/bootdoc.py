"""``GET /v1/bootparams/{ims_id}``: boot parameters of an image in this worker's catalog.

Owns the document (every field of ``sbps.publish.boot.formats.fields``, the IMS id and the kernel
command line) and where it comes from: the status snapshot only. The path and etag are the
rootfs the pass resolved, and the image's own kernel parameters are the boot-parameters
artifact the pass read with the manifest (``DesiredImage.boot_parameters``), so every
link has already passed the bucket rule. The endpoint is unauthenticated: an id that is
not in the catalog (``/v1/images``) is answered 404 from memory, and nothing here may do
I/O, ask IMS or S3 anything, or put a URL of an upstream service in an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sbps.core.errors import InputError
from sbps.core.identity import IQN_PREFIX
from sbps.core.model import DesiredImage, ImageKind
from sbps.publish.boot import formats as bootformats
from sbps.publish.boot import params as bootparams
from sbps.publish.boot.params import BootParams
from sbps.publish.http.catalog import LISTED, records
from sbps.publish.http.errors import ApiError
from sbps.reconcile.status import Status


@dataclass(frozen=True)
class BootSettings:
    """What the configuration adds to an image's rootfs: the SRV domain and IQN prefix."""

    system_name: str
    site_domain: str
    iqn_prefix: str = IQN_PREFIX
    timeout: int = bootparams.DEFAULT_TIMEOUT


def find(status: Status, ims_id: str) -> DesiredImage | None:
    """The rootfs image a record of this IMS id names in the catalog, if any."""
    for s in status.images:
        if s.state not in LISTED:
            continue
        for img in records(s):
            if img is not None and img.kind is ImageKind.ROOTFS and img.ims_id == ims_id:
                return img
    return None


def document(status: Status, ims_id: str, network: str,
             settings: BootSettings) -> dict[str, Any] | None:
    """The boot parameters of ``ims_id`` on ``network``; None when it is not in the
    catalog. Raises ``ApiError`` (422) when the image cannot be booted through SBPS."""
    img = find(status, ims_id)
    if img is None:
        return None
    if img.boot_parameters_error:
        raise ApiError(422, img.boot_parameters_error, "the image's boot-parameters "
                       "artifact could not be read; GET /debug/state (catalog warnings) "
                       "says why", field="ims_id")
    try:
        params = BootParams(path=img.source.url, etag=img.source.etag,
                            srv_name=bootparams.srv_name(network, settings.system_name,
                                                         settings.site_domain),
                            iqn_prefix=settings.iqn_prefix, timeout=settings.timeout)
    except InputError as exc:
        raise ApiError(422, exc.code, f"the image cannot be booted through SBPS: "
                       f"{exc.field}: {exc.reason}", field="ims_id") from exc
    out = dict(bootformats.fields(params))
    out["ims_id"] = ims_id
    out["cmdline"] = bootformats.cmdline(params, img.boot_parameters or "").strip()
    return out
