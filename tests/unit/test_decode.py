"""sbps.core.decode: size and depth limits checked before the standard library parses."""

from __future__ import annotations

import base64
import json

import pytest

from sbps.core.decode import (
    MAX_BYTES,
    MAX_DEPTH,
    DecodeError,
    depth,
    items,
    jwt_payload,
    loads,
    loads_toml,
)
from sbps.core.errors import InputError

DEEP = 100_000


def code_of(fn: object, *args: object, **kw: object) -> str:
    with pytest.raises(DecodeError) as err:
        fn(*args, **kw)  # type: ignore[operator]
    assert isinstance(err.value, InputError) and not err.value.temporary
    return err.value.code


@pytest.mark.parametrize("doc", [b"[" * DEEP + b"]" * DEEP, b'{"a":' * DEEP + b"1" + b"}" * DEEP,
                                 b"[" * DEEP])
def test_depth_100000_is_too_deep_without_recursion(doc: bytes) -> None:
    assert code_of(loads, doc, "manifest", "m") == "too_deep"


def test_depth_at_the_limit_parses_and_one_more_does_not() -> None:
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert depth(ok.encode()) == MAX_DEPTH
    assert loads(ok, "x", "x") is not None
    assert code_of(loads, "[" + ok + "]", "x", "x") == "too_deep"


def test_brackets_inside_strings_do_not_count() -> None:
    doc = json.dumps({"a": "[" * 1000 + '\\"{{{', "b": ["]]]"]})
    assert depth(doc.encode()) == 2
    assert loads(doc, "x", "x")["b"] == ["]]]"]


def test_size_at_and_over_the_limit() -> None:
    at = b'"' + b"x" * (MAX_BYTES - 2) + b'"'
    assert len(loads(at, "x", "x")) == MAX_BYTES - 2
    assert code_of(loads, at + b" ", "x", "x") == "too_large"
    assert code_of(loads, b"[1]", "x", "x", max_bytes=2) == "too_large"


@pytest.mark.parametrize(("doc", "kw", "code"), [
    (b"\xff\xfe{}", {}, "not_utf8"),
    (b"{oops", {}, "not_json"),
    (b"", {}, "not_json"),
    (b"1" * 5000, {}, "not_json"),  # longer than Python's int digit limit
    (b"[]", {"expect": dict}, "wrong_type"),
    (b"null", {"expect": list}, "wrong_type"),
])
def test_every_kind_of_bad_json(doc: bytes, kw: dict[str, type], code: str) -> None:
    assert code_of(loads, doc, "claim", "c", **kw) == code


def test_the_error_names_source_and_document() -> None:
    with pytest.raises(DecodeError) as err:
        loads(b"[" * DEEP, "claim", "s3://b/.sbps/luns/7")
    assert (err.value.source, err.value.obj, err.value.field) == (
        "claim", "s3://b/.sbps/luns/7", "claim")


def test_items_keeps_the_good_records_of_a_list() -> None:
    bad = "[" * DEEP + "]" * DEEP
    got = items(f'[{{"id": "a"}}, {{"x": {bad}}}, "s", {{"id": "b"}}]', "ims", "images")
    assert got[0] == {"id": "a"} and got[2] == "s" and got[3] == {"id": "b"}
    assert isinstance(got[1], DecodeError) and got[1].code == "too_deep"
    assert got[1].obj == "images[1]"
    assert items(" [ ] ", "ims", "images") == []
    assert items('[{"id": "a"}]', "ims", "images") == [{"id": "a"}]


@pytest.mark.parametrize(("doc", "code"), [
    ("[" * DEEP, "too_deep"), ("{}", "wrong_type"), ("[1,", "not_json"),
    ("{" + "[" * DEEP, "too_deep")])
def test_items_rejects_a_broken_list_whole(doc: str, code: str) -> None:
    assert code_of(items, doc, "ims", "images") in (code, "not_json")


def test_toml_depth_and_errors() -> None:
    assert loads_toml('a = "[[[[" # [[[[\n[t]\nb = [[1]]\n', "tenant_map", "t") == {
        "a": "[[[[", "t": {"b": [[1]]}}
    assert code_of(loads_toml, "a = " + "[" * DEEP + "]" * DEEP, "tenant_map", "t") == \
        "too_deep"
    assert code_of(loads_toml, "a = = 1", "tenant_map", "t") == "not_toml"
    assert code_of(loads_toml, b"a = '\xff'", "tenant_map", "t") == "not_utf8"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_jwt_payload() -> None:
    payload = b64(b'{"exp": 5}')
    assert jwt_payload(f"h.{payload}.s") == {"exp": 5}
    assert code_of(jwt_payload, "a.b") == "wrong_type"
    assert code_of(jwt_payload, "h.!!!.s") == "not_base64"
    assert code_of(jwt_payload, f"h.{b64(b'[' * 50_000)}.s") == "too_deep"
    assert code_of(jwt_payload, f"h.{b64(b'[1]')}.s") == "wrong_type"
    assert code_of(jwt_payload, "h." + "A" * 200_000 + ".s") == "too_large"
