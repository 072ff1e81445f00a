"""Output formats of an image's boot parameters: cmdline, BOS, SAT bootprep and JSON."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml  # installed with moto[server] (test requirement); sbps itself writes YAML by hand

from sbps.core import identity
from sbps.core.errors import InputError
from sbps.core.model import Arch, Artifact, ArtifactType, ImageRecord, Manifest, S3Url
from sbps.publish.boot import formats as bootformats
from sbps.publish.boot import params as bootparams

IMS_ID = "4fab0408-0bfe-4668-b957-964f8ff0e4e9"
ROOTFS = S3Url("boot-images", f"{IMS_ID}/rootfs")
ROOTFS_ETAG = "b6ea7a2314d54dead0c94223863b3488-1977"
SRV = "_sbps-hsn._tcp.my-system.my-site-domain"
RECORD = ImageRecord(ims_id=IMS_ID, name="compute-x86", created=None, arch=Arch.AARCH64,
                     manifest=S3Url("boot-images", f"{IMS_ID}/manifest.json"),
                     manifest_etag="b0ace28163302e18b68cf04dd64f2e01")
MANIFEST = Manifest(version="1.0", created=None, artifacts=(
    Artifact(S3Url("boot-images", f"{IMS_ID}/kernel"), "1" * 32, None,
             ArtifactType.KERNEL.value),
    Artifact(ROOTFS, ROOTFS_ETAG, None, ArtifactType.ROOTFS.value),
    Artifact(S3Url("boot-images", f"{IMS_ID}/boot_parameters"), "2" * 32, None,
             ArtifactType.BOOT_PARAMETERS.value),
))


@pytest.fixture
def params() -> bootparams.BootParams:
    return bootformats.for_image(RECORD, MANIFEST, srv_name=SRV)


def test_for_image_uses_the_rootfs_artifact(params: bootparams.BootParams) -> None:
    assert (params.path, params.etag, params.timeout, params.ramroot) == (
        ROOTFS, ROOTFS_ETAG, 300, False)
    assert params.wwid == identity.rootfs(ROOTFS, ROOTFS_ETAG).wwid
    assert bootformats.boot_parameters_url(MANIFEST) == MANIFEST.artifacts[2].url


@pytest.mark.parametrize(("artifacts", "field"), [
    ((MANIFEST.artifacts[0],), "artifacts"),
    ((dataclasses.replace(MANIFEST.artifacts[1], etag=None),), "artifacts[rootfs].link.etag"),
    ((dataclasses.replace(MANIFEST.artifacts[1], etag=""),), "artifacts[rootfs].link.etag"),
])
def test_for_image_refuses_a_manifest_it_cannot_boot(artifacts: tuple[Artifact, ...],
                                                     field: str) -> None:
    manifest = dataclasses.replace(MANIFEST, artifacts=artifacts)
    with pytest.raises(InputError) as err:
        bootformats.for_image(RECORD, manifest, srv_name=SRV)
    assert err.value.field == field
    assert str(RECORD.manifest) in err.value.obj


def test_cmdline_is_the_artifact_then_root(params: bootparams.BootParams) -> None:
    text = "console=ttyS0,115200 root=live:x\n  ip=dhcp quiet\n"
    line = bootformats.cmdline(params, text)
    assert line == f"console=ttyS0,115200 ip=dhcp quiet {bootparams.generate(params)}"
    assert bootparams.parse(line) == params
    assert bootformats.cmdline(params) == bootparams.generate(params)


def test_bos_boot_set(params: bootparams.BootParams) -> None:
    body = json.loads(bootformats.bos(params, RECORD))
    assert body == {"boot_sets": {"compute": {
        "arch": "ARM", "type": "s3", "path": f"s3://boot-images/{IMS_ID}/manifest.json",
        "etag": "b0ace28163302e18b68cf04dd64f2e01", "node_roles_groups": ["Compute"],
        "rootfs_provider": "sbps",
        "rootfs_provider_passthrough": f"sbps:v1:iqn.2023-06.csm.iscsi:{SRV}:300"}}}
    ram = dataclasses.replace(params, ramroot=True, timeout=60)
    passthrough = json.loads(bootformats.bos(ram, RECORD))["boot_sets"]["compute"][
        "rootfs_provider_passthrough"]
    assert passthrough == f"sbps:v1:iqn.2023-06.csm.iscsi:{SRV}:60:1"


@pytest.mark.parametrize(("change", "field"), [
    ({"manifest_etag": None}, "link.etag"), ({"manifest": None}, "link")])
def test_bos_needs_the_manifest_location(params: bootparams.BootParams,
                                         change: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as err:
        bootformats.bos(params, dataclasses.replace(RECORD, **change))  # type: ignore[arg-type]
    assert err.value.field == field


def test_bootprep_session_template(params: bootparams.BootParams) -> None:
    text = bootformats.bootprep(params, RECORD, configuration="compute-config")
    assert yaml.safe_load(text) == {"session_templates": [{
        "name": "compute-x86", "image": {"ims": {"id": IMS_ID}},
        "configuration": "compute-config",
        "bos_parameters": {"boot_sets": {"compute": {
            "arch": "ARM", "node_roles_groups": ["Compute"], "rootfs_provider": "sbps",
            "rootfs_provider_passthrough": f"sbps:v1:iqn.2023-06.csm.iscsi:{SRV}:300"}}}}]}
    odd = dataclasses.replace(RECORD, name='we: "need" #quoting\n')
    parsed = yaml.safe_load(bootformats.bootprep(params, odd))
    assert parsed["session_templates"][0]["name"] == 'we: "need" #quoting\n'
    assert parsed["session_templates"][0]["configuration"] == ""


def test_json_has_every_field_and_the_identity(params: bootparams.BootParams) -> None:
    body = json.loads(bootformats.to_json(params, RECORD))
    ident = identity.rootfs(ROOTFS, ROOTFS_ETAG)
    assert body["serial"] == ident.serial and body["wwid"] == ident.wwid
    assert body["root"] == bootparams.generate(params)
    for name in ("path", "etag", "transport", "schema", "iqn_prefix", "srv_name", "timeout",
                 "ramroot", "product_id", "identity_key", "rootfs_provider_passthrough"):
        assert name in body
    assert body["image"]["id"] == IMS_ID and body["image"]["arch"] == "aarch64"
    assert "image" not in json.loads(bootformats.to_json(params))


def test_render_dispatches_and_refuses_unknown(params: bootparams.BootParams) -> None:
    assert bootformats.render("cmdline", params, RECORD, "quiet").startswith("quiet root=")
    for fmt in bootformats.FORMATS:
        assert bootformats.render(fmt, params, RECORD)
    with pytest.raises(ValueError, match="unknown format"):
        bootformats.render("xml", params, RECORD)
