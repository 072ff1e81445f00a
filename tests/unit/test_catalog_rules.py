"""The label rule and the PE registration rule, table-driven."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sbps.config import CatalogConfig
from sbps.core.model import Arch, ImageRecord, S3Url
from sbps.sources.catalog.rules import Decision, decide, is_pe_object, registered_pe

LABEL = {"sbps-project": "true"}
P, U, N = Decision.PROJECT, Decision.UNLABELLED, Decision.UNTAGGED


@pytest.mark.parametrize(("metadata", "settings", "expected"), [
    (LABEL, {}, P),
    ({"sbps-project": "TRUE "}, {}, P),
    ({"sbps-project": "false"}, {}, U),
    ({"sbps-project": "yes"}, {}, U),
    ({"other": "true"}, {}, U),
    ({}, {}, U),
    (None, {}, N),
    (None, {"untagged": "project"}, P),
    ({}, {"untagged": "project"}, U),
    ({"sbps-project": "false"}, {"tagging": False}, P),
    (None, {"tagging": False}, P),
    ({"mine": "true"}, {"label_key": "mine"}, P),
    (LABEL, {"label_key": "mine"}, U),
])
def test_label_rule(metadata: dict[str, str] | None, settings: dict[str, Any],
                    expected: Decision) -> None:
    assert decide(metadata, replace(CatalogConfig(), **settings)) is expected


@pytest.mark.parametrize(("key", "expected"), [
    ("PE/CPE-base.x86_64-24.11.squashfs", True),
    ("PE/sub/dir.squashfs", False),
    ("PE/readme.txt", False),
    ("PE/.squashfs", False),
    ("other/x.squashfs", False),
])
def test_pe_objects(key: str, expected: bool) -> None:
    assert is_pe_object(S3Url("boot-images", key), "boot-images") is expected
    assert not is_pe_object(S3Url("elsewhere", key), "boot-images")


def rec(ims_id: str, name: str, link: str | None, labelled: bool = True) -> ImageRecord:
    return ImageRecord(ims_id=ims_id, name=name, created=None, arch=Arch.X86_64,
                       manifest=S3Url("boot-images", link) if link else None,
                       manifest_etag=None, metadata=LABEL if labelled else {})


def test_pe_registration_by_link_or_by_name() -> None:
    records = [
        rec("a", "whatever", "PE/cpe-a.squashfs"),
        rec("b", "cpe-b", None),
        rec("c", "cpe-c.squashfs", None),
        rec("d", "cpe-d", "PE/cpe-d.squashfs", labelled=False),
        rec("e", "cpe-e", "e/manifest.json"),
    ]
    got = registered_pe(records, "boot-images", CatalogConfig())
    assert got == {"PE/cpe-a.squashfs": "a", "PE/cpe-b.squashfs": "b",
                   "PE/cpe-c.squashfs": "c"}
