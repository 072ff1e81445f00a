"""The one file of root=sbps-s3 test vectors (tests/vectors/bootparams.json), against the
Python parser. The initramfs module's shell parser passes the same file
(tests/unit/test_dracut_parser.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sbps.core.errors import InputError
from sbps.publish.boot.params import parse

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "bootparams.json")
                     .read_text())


@pytest.mark.parametrize("case", VECTORS["valid"], ids=[c["name"] for c in VECTORS["valid"]])
def test_valid_vector(case: dict[str, Any]) -> None:
    p = parse(case["input"])
    want = case["expect"]
    got = {"path": str(p.path), "etag": p.etag, "iqn_prefix": p.iqn_prefix,
           "srv_name": p.srv_name, "timeout": p.timeout, "ramroot": p.ramroot,
           "warning": bool(p.notes), "serial": p.serial, "wwid": p.wwid}
    assert got == want


@pytest.mark.parametrize("case", VECTORS["invalid"],
                         ids=[c["name"] for c in VECTORS["invalid"]])
def test_invalid_vector_names_the_field(case: dict[str, Any]) -> None:
    with pytest.raises(InputError) as err:
        parse(case["input"])
    assert err.value.field == case["field"]
    assert err.value.obj == "root="
    assert f": {case['field']}: " in str(err.value)


def test_the_file_covers_what_the_issue_names() -> None:
    names = " ".join(c["name"] for c in VECTORS["valid"] + VECTORS["invalid"])
    for form in ("uppercase etag", "uppercase IQN prefix", "ramroot", "empty etag"):
        assert form in names
