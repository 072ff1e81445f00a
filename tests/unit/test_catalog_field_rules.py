"""catalog.rules = "field" selects what the field agent selected, difference by difference.

Each table runs the same inputs through sbps's rule and through the field agent's own
expressions (``tests/fixtures/field_agent.py``, transcribed from Cray-HPE/sbps-marshal's
``marshal/bin/agent.py`` and ``marshal/lib/config.py``), and checks that they agree under
the field rules; the strict rules are checked to differ where docs/upgrade.md says they do
(so each table can fail).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from sbps.config import CatalogConfig, load
from sbps.config.choices import Rules
from sbps.core.model import ArtifactType, Manifest, Problem, S3Url
from sbps.sources.catalog.parse import parse_manifest, record_metadata
from sbps.sources.catalog.rules import decide, is_pe_object
from tests.fixtures.field_agent import is_pe as field_is_pe
from tests.fixtures.field_agent import projects_record as field_projects_record
from tests.fixtures.field_agent import rootfs as field_rootfs
from tests.fixtures.field_agent import tagging as field_tagging

ROOTFS = ArtifactType.ROOTFS.value
FIELD = replace(CatalogConfig(), rules=Rules.FIELD)
STRICT = CatalogConfig()


# Labels ------------------------------------------------------------------------------

RECORDS: list[dict[str, Any]] = [
    {"metadata": {"sbps-project": "true"}},
    {"metadata": {"sbps-project": "True"}},      # strict: projected; field: not
    {"metadata": {"sbps-project": "TRUE"}},
    {"metadata": {"sbps-project": " true "}},
    {"metadata": {"sbps-project": True}},        # JSON true: the field compares to "true"
    {"metadata": {"sbps-project": "false"}},
    {"metadata": {"sbps-project": "yes"}},
    {"metadata": {"other": "true"}},
    {"metadata": {}},
    {},                                          # no metadata: the field projects it
]


def _decision(image: dict[str, Any], cfg: CatalogConfig) -> bool:
    metadata = record_metadata(image, "img", [])
    assert not isinstance(metadata, Problem)
    return decide(metadata, cfg, raw=image.get("metadata")).projected


@pytest.mark.parametrize("image", RECORDS, ids=json.dumps)
@pytest.mark.parametrize("tagging", [True, False])
def test_field_label_rule_is_the_field_agents(image: dict[str, Any], tagging: bool) -> None:
    cfg = replace(FIELD, tagging=tagging)
    assert _decision(image, cfg) is field_projects_record(image, tagging)


def test_strict_label_rule_differs_where_documented() -> None:
    differs = [r for r in RECORDS if _decision(r, STRICT) != field_projects_record(r)]
    assert differs == [{"metadata": {"sbps-project": v}} for v in
                       ("True", "TRUE", " true ", True)] + [{}]


def test_untagged_setting_is_ignored_under_field_rules() -> None:
    assert _decision({}, replace(FIELD, untagged="skip")) is True
    assert _decision({}, replace(STRICT, untagged="project")) is True


def test_label_from_a_metadata_list_compares_the_value_as_sent() -> None:
    pairs = {"metadata": [{"key": "sbps-project", "value": True}]}
    assert _decision(pairs, FIELD) is False
    assert _decision({"metadata": [{"key": "sbps-project", "value": "true"}]}, FIELD)


# PE objects --------------------------------------------------------------------------

PE_KEYS = ["PE/cpe.x86_64-24.11.squashfs", "PE/CPE-NVIDIA.SQUASHFS", "PE/nested/dir/cpe.squashfs",
           "PE/noext", "PE/readme.txt", "PE/sub/", "PE/", "other/cpe.squashfs",
           "pe/cpe.squashfs"]


@pytest.mark.parametrize("key", PE_KEYS)
def test_field_pe_rule_is_the_field_agents(key: str) -> None:
    folder = key.endswith("/")  # a folder marker: targetcli cannot make a fileio LUN of it
    expected = field_is_pe(key) and not folder
    assert is_pe_object(S3Url("boot-images", key), "boot-images", Rules.FIELD) is expected
    assert not is_pe_object(S3Url("elsewhere", key), "boot-images", Rules.FIELD)


def test_strict_pe_rule_differs_where_documented() -> None:
    differs = [k for k in PE_KEYS if field_is_pe(k) and not k.endswith("/")
               and not is_pe_object(S3Url("boot-images", k), "boot-images")]
    assert differs == ["PE/CPE-NVIDIA.SQUASHFS", "PE/nested/dir/cpe.squashfs", "PE/noext",
                       "PE/readme.txt"]


# The rootfs artifact -----------------------------------------------------------------

def art(n: int, etag: Any = "missing", kind: str = ROOTFS) -> dict[str, Any]:
    link: dict[str, Any] = {"path": f"s3://boot-images/img/rootfs{n}", "type": "s3"}
    if etag != "missing":
        link["etag"] = etag
    return {"type": kind, "link": link}


MANIFESTS: dict[str, list[dict[str, Any]]] = {
    "one": [art(1, "e1")],
    "two, both with etags": [art(1, "e1"), art(2, "e2")],
    "the first without etag": [art(1), art(2, "e2")],
    "the last without etag key": [art(1, "e1"), art(2)],
    "the last with a null etag": [art(1, "e1"), art(2, None)],
    "the first with a null etag": [art(1, None), art(2, "e2")],
    "none with an etag": [art(1), art(2)],
    "a kernel after": [art(1, "e1"), art(2, "k2", "application/vnd.cray.image.kernel")],
    "null link then one": [{"type": ROOTFS, "link": None}, art(2, "e2")],
}


def _rootfs(body: list[dict[str, Any]], last: bool) -> tuple[str, str] | None:
    parsed = parse_manifest("img", json.dumps({"artifacts": body}), [], last_rootfs=last)
    if isinstance(parsed, Problem):
        return None
    assert isinstance(parsed, Manifest)
    rootfs = parsed.first(ArtifactType.ROOTFS)
    assert rootfs is not None and rootfs.etag is not None
    return str(rootfs.url), rootfs.etag


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_field_rootfs_choice_is_the_field_agents(name: str) -> None:
    body = MANIFESTS[name]
    assert _rootfs(body, last=True) == field_rootfs({"artifacts": body})


def test_strict_rootfs_choice_differs_where_documented() -> None:
    differs = sorted(n for n, body in MANIFESTS.items()
                     if _rootfs(body, last=False) != field_rootfs({"artifacts": body}))
    assert differs == ["null link then one", "the first with a null etag",
                       "the first without etag", "the last with a null etag",
                       "two, both with etags"]


# IMS_TAGGING -------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["true", "True", "TRUE", "1", "yes", "on", "false", "0",
                                   "no", "", "garbage", None])
def test_ims_tagging_reads_as_the_field_read_it(value: str | None) -> None:
    env = {} if value is None else {"SBPS_MARSHAL_IMS_TAGGING": value}
    loaded = load(None, env=env)
    assert loaded.config.catalog.tagging is field_tagging(value)
    said = any("SBPS_MARSHAL_IMS_TAGGING" in w for w in loaded.warnings)
    assert said is (value in ("True", "TRUE", "1", "yes", "on"))


def test_sbps_own_variable_keeps_sbps_reading() -> None:
    loaded = load(None, env={"SBPS_MARSHAL_CATALOG_TAGGING": "True"})
    assert loaded.config.catalog.tagging is True
