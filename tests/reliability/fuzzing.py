"""Hostile-input strategies (hypothesis) and the harness that counts crashes.

A *crash* is any exception other than the typed rejection the parser promises; the harness
counts crashes instead of stopping at the first, so the report can say how many, and keeps a
few examples. Strategies mix well-formed shapes with hostile values: path traversal,
oversized strings, control characters, lone surrogates, non-UTF-8 bytes, wrong types.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

TRAVERSAL = ("..", "../..", "../../etc/passwd", "/etc/passwd", "a/../../b", "./x", "a//b",
             "..\\..\\x", "%2e%2e/x", "x/..", "x\x00y", "~root", "-rf", "\u202e", "\ud800")


def hostile_text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=max_size),
        st.sampled_from(TRAVERSAL),
        st.builds(lambda c, n: c * n, st.sampled_from("aA/.:_-\u00e9\x7f"),
                  st.integers(0, 5000)),
        st.from_regex(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                      fullmatch=True),
    )


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                     hostile_text())


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(scalars(), lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text(10), inner, max_size=4)),
        max_leaves=12)


def s3_paths() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda b, k: f"s3://{b}/{k}", st.sampled_from(("boot-images", "b", "x" * 70,
                                                                  "Bad_Bucket", "")),
                  st.one_of(hostile_text(), st.sampled_from(TRAVERSAL))),
        json_values())


def links() -> st.SearchStrategy[Any]:
    return st.one_of(st.fixed_dictionaries({}, optional={
        "path": s3_paths(), "etag": st.one_of(scalars(), st.from_regex(
            r'"?[0-9a-f]{32}(-[0-9]{1,5})?"?', fullmatch=True)),
        "type": st.one_of(st.just("s3"), scalars())}), json_values())


VALID_RECORD = {"id": "4fab0408-0bfe-4668-b957-964f8ff0e4e9", "name": "compute",
                "arch": "x86_64", "created": "2024-01-02T03:04:05Z",
                "link": {"path": "s3://boot-images/4fab0408-0bfe-4668-b957-964f8ff0e4e9/"
                                 "manifest.json", "etag": "b6ea7a2314d54dead0c94223863b3488",
                         "type": "s3"},
                "metadata": {"sbps-project": "true"}}
VALID_MANIFEST = {"version": "1.0", "created": "2024-01-02 03:04:05", "artifacts": [
    {"link": {"path": "s3://boot-images/4fab0408-0bfe-4668-b957-964f8ff0e4e9/rootfs",
              "etag": "b6ea7a2314d54dead0c94223863b3488-3", "type": "s3"},
     "md5": "0123456789abcdef0123456789abcdef",
     "type": "application/vnd.cray.image.rootfs.squashfs"}]}


def _mutated(base: dict[str, Any], paths: list[tuple[str, ...]]) -> st.SearchStrategy[Any]:
    """``base`` with up to two fields (at ``paths``) replaced or removed."""

    def apply(changes: list[tuple[tuple[str, ...], Any, bool]]) -> Any:
        doc = json.loads(json.dumps(base))
        for path, value, remove in changes:
            node: Any = doc
            for part in path[:-1]:
                # An earlier change may have replaced a container with a scalar.
                if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                elif isinstance(node, dict) and part in node:
                    node = node[part]
                else:
                    node = None
            if not isinstance(node, dict):
                continue
            if remove:
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        return doc

    return st.lists(st.tuples(st.sampled_from(paths), st.one_of(json_values(), s3_paths()),
                              st.booleans()), max_size=2).map(apply)


def ims_records() -> st.SearchStrategy[Any]:
    near_valid = _mutated(VALID_RECORD, [("id",), ("name",), ("arch",), ("created",),
                                         ("link",), ("link", "path"), ("link", "etag"),
                                         ("link", "type"), ("metadata",),
                                         ("metadata", "sbps-project")])
    return st.one_of(near_valid, _ims_records())


def _ims_records() -> st.SearchStrategy[Any]:
    metadata = st.one_of(st.dictionaries(hostile_text(20), scalars(), max_size=4),
                         st.lists(st.fixed_dictionaries({"key": scalars(),
                                                         "value": scalars()}), max_size=3),
                         json_values())
    record = st.fixed_dictionaries({}, optional={
        "id": st.one_of(hostile_text(), scalars()), "name": st.one_of(hostile_text(), scalars()),
        "arch": st.one_of(st.sampled_from(("x86_64", "aarch64")), scalars()),
        "created": st.one_of(scalars(), st.sampled_from(("2024-01-02T03:04:05Z",
                                                          "1700000000", "Tue Jan  2 2024"))),
        "link": st.one_of(st.none(), links()), "metadata": metadata})
    return st.one_of(record, json_values())


def manifests() -> st.SearchStrategy[bytes]:
    artifact = st.one_of(st.fixed_dictionaries({}, optional={
        "link": links(), "md5": st.one_of(scalars(), st.from_regex(r"[0-9a-f]{32}",
                                                                    fullmatch=True)),
        "type": st.one_of(st.sampled_from(("application/vnd.cray.image.rootfs.squashfs",
                                           "application/vnd.cray.image.kernel")), scalars())}),
        json_values())
    doc = st.fixed_dictionaries({}, optional={
        "version": scalars(), "created": scalars(),
        "artifacts": st.one_of(st.lists(artifact, max_size=4), json_values())})
    near_valid = _mutated(VALID_MANIFEST, [
        ("version",), ("created",), ("artifacts",), ("artifacts", "0", "link"),
        ("artifacts", "0", "link", "path"), ("artifacts", "0", "link", "etag"),
        ("artifacts", "0", "md5"), ("artifacts", "0", "type")])
    return st.one_of(near_valid.map(lambda d: json.dumps(d).encode()),
                     doc.map(lambda d: json.dumps(d).encode()),
                     st.binary(max_size=200),
                     doc.map(lambda d: json.dumps(d).encode() + b"\xff\xfe"),
                     doc.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8",
                                                                               "surrogatepass")))


GOOD_ROOT = ("root=sbps-s3:s3://boot-images/4fab0408-0bfe-4668-b957-964f8ff0e4e9/rootfs:"
             "b6ea7a2314d54dead0c94223863b3488-1977:sbps:v1:iqn.2023-06.csm.iscsi:"
             "_sbps-hsn._tcp.my-system.my-site-domain:300")


def boot_strings() -> st.SearchStrategy[str]:
    fields = GOOD_ROOT.split(":")

    def mutate(picks: list[tuple[int, str]], extra: str) -> str:
        parts = list(fields)
        for i, text in picks:
            parts[i % len(parts)] = text
        return ":".join(parts) + extra

    return st.one_of(
        st.text(max_size=200),
        st.builds(mutate, st.lists(st.tuples(st.integers(0, 20), hostile_text()), max_size=3),
                  st.sampled_from(("", ":1", ":0", ":yes", ":1:2", " quiet", '"'))),
        st.builds(lambda a, b: f"{a} {GOOD_ROOT} {b}", hostile_text(), hostile_text()),
    )


@dataclass
class Tally:
    inputs: int = 0
    accepted: int = 0
    rejected: int = 0
    crashes: int = 0
    examples: list[str] = field(default_factory=list)


def run(strategy: st.SearchStrategy[Any], check: Callable[[Any], bool], *, cases: int,
        seed_value: int) -> Tally:
    """Feed ``cases`` inputs to ``check``, which returns True (accepted) or False (rejected
    as promised) and raises on anything else (counted as a crash)."""
    tally = Tally()

    @seed(seed_value)
    @settings(max_examples=cases, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(value: Any) -> None:
        tally.inputs += 1
        try:
            ok = check(value)
        except Exception as exc:  # counting crashes, not stopping at one, is the point
            tally.crashes += 1
            if len(tally.examples) < 5:
                tally.examples.append(f"{type(exc).__name__}: {exc} <- {value!r:.200}")
            return
        if ok:
            tally.accepted += 1
        else:
            tally.rejected += 1

    one()
    return tally
