"""Bounded decoding of every document that comes from outside the process.

Owns the size and nesting-depth limits of JSON (IMS answers, manifests, claim objects,
Kubernetes and PowerDNS answers, local state files), TOML (the tenant map) and base64url
JWT payloads. The depth is measured by a linear scan of the brackets outside strings
*before* the standard library's parser, which recurses, sees the text: a document nested
100,000 deep costs one scan and a ``DecodeError``, never a RecursionError or MemoryError.
Every failure is a ``DecodeError`` (an InputError) naming the source, the document and a
stable code: ``too_large``, ``too_deep``, ``not_utf8``, ``not_json``, ``not_toml``,
``not_base64`` or ``wrong_type``. Imports nothing of sbps but ``sbps.core.errors``; must not do
I/O, log or count (the callers report each rejected document once).
"""

from __future__ import annotations

import base64
import binascii
import json
import operator
import re
import tomllib
from itertools import accumulate, repeat
from typing import Any

from sbps.core.errors import InputError

MAX_DEPTH = 64
"""Deeper than any real document sbps reads (an IMS record is about 4 deep)."""
MAX_BYTES = 16 * 2**20
"""The default size limit (manifests, claims, answers of small APIs)."""
MAX_SALVAGE = 64 * 2**20
"""A list larger than this is rejected whole when one item is too deep (see items())."""

CODES = ("too_large", "too_deep", "not_utf8", "not_json", "not_toml", "not_base64",
         "wrong_type", "bad_header")
"""The codes of DecodeError (``bad_header``: a field of an S3 answer, see ``sbps.sources.s3``)."""

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_TOML_SKIP = re.compile(rb'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
                        rb"|'[^'\n]*'|#[^\n]*")
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]', re.DOTALL)
# Openers become 2 and closers 0 (one less is +1 / -1); every other byte is deleted.
_BRACKETS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


class DecodeError(InputError):
    """A document from outside could not be decoded within the limits, or has the wrong
    shape. ``source`` says what kind of document it is (``ims``, ``manifest``, ``claim``,
    ``tenant_map``, ``token``, ``k8s``, ``pdns``, ``s3_header``, ``state``...)."""

    code = "not_json"

    def __init__(self, source: str, obj: str, reason: str, *, code: str) -> None:
        super().__init__(obj, source, reason, code=code)
        self.source = source


def depth(data: bytes, skip: re.Pattern[bytes] = _JSON_STRING) -> int:
    """The deepest bracket nesting of ``data`` outside the spans ``skip`` matches (JSON
    strings by default). Linear time, constant stack, at C speed."""
    bare = skip.sub(b"", data).translate(_BRACKETS, _NOT_BRACKETS)
    if not bare:
        return 0
    return max(0, max(accumulate(map(operator.sub, bare, repeat(1)))))


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)


def _checked(data: bytes | str, source: str, obj: str, max_bytes: int, max_depth: int,
             skip: re.Pattern[bytes] = _JSON_STRING) -> str:
    raw = _as_bytes(data)
    if len(raw) > max_bytes:
        raise DecodeError(source, obj, f"{len(raw)} bytes, more than the limit of "
                          f"{max_bytes}", code="too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(source, obj, f"not UTF-8 at byte {exc.start}",
                          code="not_utf8") from None
    deepest = depth(raw, skip)
    if deepest > max_depth:
        raise DecodeError(source, obj, f"nested {deepest} deep, more than the limit of "
                          f"{max_depth}", code="too_deep")
    return text


def loads(data: bytes | str, source: str, obj: str, *, max_bytes: int = MAX_BYTES,
          max_depth: int = MAX_DEPTH, expect: type | None = None) -> Any:
    """One JSON document within the limits; ``expect`` (dict or list) checks its top type."""
    text = _checked(data, source, obj, max_bytes, max_depth)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: defence in depth only
        raise DecodeError(source, obj, f"not JSON: {str(exc)[:160]}",
                          code="not_json") from None
    return _expect(doc, expect, source, obj)


def loads_toml(data: bytes | str, source: str, obj: str, *, max_bytes: int = MAX_BYTES,
               max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """One TOML document within the limits (strings and comments are not counted)."""
    text = _checked(data, source, obj, max_bytes, max_depth, _TOML_SKIP)
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(source, obj, f"not TOML: {str(exc)[:160]}",
                          code="not_toml") from None


def jwt_payload(token: str, source: str = "token", obj: str = "token", *,
                max_bytes: int = 64 * 2**10) -> dict[str, Any]:
    """The decoded (unverified) payload of a JWT: base64url JSON, an object."""
    parts = token.split(".")
    if len(parts) != 3:
        raise DecodeError(source, obj, f"{len(parts)} dot-separated parts, not 3",
                          code="wrong_type")
    if len(parts[1]) > max_bytes * 4 // 3 + 4:
        raise DecodeError(source, obj, "payload larger than the limit", code="too_large")
    try:
        raw = base64.b64decode(parts[1] + "=" * (-len(parts[1]) % 4), altchars=b"-_",
                               validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(source, obj, f"payload is not base64url: {exc}",
                          code="not_base64") from None
    doc: dict[str, Any] = loads(raw, source, obj, max_bytes=max_bytes, expect=dict)
    return doc


def items(data: bytes | str, source: str, obj: str, *, max_bytes: int = MAX_BYTES,
          max_depth: int = MAX_DEPTH) -> list[Any]:
    """A JSON list whose items are decoded one by one: an item too deep or not JSON is
    replaced by its ``DecodeError`` (named ``obj[n]``) and the others are kept, so one bad
    record never hides the rest. Errors of the list itself raise DecodeError."""
    raw = _as_bytes(data)
    try:
        doc = loads(raw, source, obj, max_bytes=max_bytes, max_depth=max_depth + 1,
                    expect=list)
    except DecodeError as exc:
        if exc.code != "too_deep" or len(raw) > MAX_SALVAGE:
            raise
        return _salvage(raw, source, obj, max_depth)
    out: list[Any] = doc
    return out


def _salvage(raw: bytes, source: str, obj: str, max_depth: int) -> list[Any]:
    """Split a too-deep list at its top-level commas and decode each item alone."""
    spans: list[tuple[int, int, int]] = []  # (start, end, deepest) of each item
    level = deepest = 0
    start = -1
    for m in _TOKENS.finditer(raw):
        tok = m.group()
        if tok in (b"[", b"{"):
            level += 1
            if level == 1:
                if tok != b"[":
                    break
                start = m.end()
                continue
            deepest = max(deepest, level - 1)
        elif tok in (b"]", b"}"):
            level -= 1
            if level == 0:
                spans.append((start, m.start(), deepest))
                break
        elif tok == b"," and level == 1:
            spans.append((start, m.start(), deepest))
            start, deepest = m.end(), 0
    if level != 0 or not spans or raw[:spans[0][0] - 1].strip() or \
            raw[spans[-1][1] + 1:].strip():
        raise DecodeError(source, obj, "not a JSON list", code="not_json")
    if len(spans) == 1 and not raw[spans[0][0]:spans[0][1]].strip():
        return []
    out: list[Any] = []
    for n, (begin, end, deep) in enumerate(spans):
        where = f"{obj}[{n}]"
        if deep > max_depth:
            out.append(DecodeError(source, where, f"nested {deep} deep, more than the "
                                   f"limit of {max_depth}", code="too_deep"))
            continue
        try:
            out.append(loads(raw[begin:end], source, where, max_bytes=len(raw),
                             max_depth=max_depth))
        except DecodeError as exc:
            out.append(exc)
    return out


def _expect(doc: Any, expect: type | None, source: str, obj: str) -> Any:
    if expect is not None and not isinstance(doc, expect):
        kind = "null" if doc is None else type(doc).__name__
        raise DecodeError(source, obj, f"expected a JSON {_NAMES.get(expect, 'value')}, got "
                          f"{kind}", code="wrong_type")
    return doc


_NAMES: dict[type, str] = {dict: "object", list: "list"}
