"""Raw-byte documents for the real decoding paths (IMS answers, manifests, claim objects).

Each input kind is a valid document of that kind and the size limit of its path. The
strategy mixes: random bytes; the valid document broken byte by byte (truncated, a byte
flipped, invalid UTF-8 or a lone surrogate inserted, a BOM in front); nesting from one to
100,000 levels (lists, objects, both), closed or not, alone or in place of a field of the
valid document; and documents padded, or grown by one long string or one long list, to
sizes up to the limit. ``boundary`` gives the documents of exactly the limit (and one byte
over it), which are too large to draw thousands of times. Must not decide what passes.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass

from hypothesis import strategies as st

from sbps.core.identity import digest as sha224
from sbps.sources.claims.codec import IndexRecord, claim_from_dict, claim_to_bytes, index_to_bytes
from tests.reliability.fuzzing import VALID_MANIFEST, VALID_RECORD

MARK = '"@@"'
MAX_DEPTH = 100_000
#: Random sizes are drawn up to this (or the limit if smaller); the limit itself is tried
#: by ``boundary``.
DRAWN_SIZE = 1 << 20
BAD_UTF8 = (b"\xff", b"\xfe", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
            b"\x80", b"\xe2\x82")
SHAPES = {"list": ("[", "]"), "object": ('{"a":', "}"), "mixed": ('[{"k":', "}]"),
          "string-key": ('{"\\u00e9\\ud800":[', "]}")}


@dataclass(frozen=True)
class Kind:
    """One input kind: its valid document, templates (the document with ``MARK`` where a
    value can be replaced) and the byte limit of its path (``module.attribute``)."""

    name: str
    valid: bytes
    templates: tuple[str, ...]
    limit_at: tuple[str, ...]

    @property
    def limit(self) -> int:
        """The first of ``limit_at`` that exists: the limits may move when the decoders
        are shared."""
        for where in self.limit_at:
            module, _, attr = where.rpartition(".")
            try:
                value = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError):
                continue
            return int(value)
        raise AssertionError(f"{self.name}: no size limit found at {self.limit_at}")


def _template(doc: object, *path: str) -> str:
    node = json.loads(json.dumps(doc))
    target = node
    for part in path[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(path[-1])] = "@@"
    else:
        target[path[-1]] = "@@"
    return json.dumps(node)


KEY = "rootfs:s3://boot-images/4fab0408/rootfs:b6ea7a2314d54dead0c94223863b3488-3"
CLAIM = {"version": 1, "lun_id": 7, "identity_key": KEY, "digest": sha224(KEY),
         "holders": ["ncn-w001"], "created_at": 1.0, "updated_at": 2.0}

IMS = Kind("IMS answers (raw bytes through ImsClient)",
           json.dumps([VALID_RECORD]).encode(),
           (MARK, _template([VALID_RECORD], "0"), _template([VALID_RECORD], "0", "metadata"),
            _template([VALID_RECORD], "0", "link"),
            _template([VALID_RECORD], "0", "metadata", "sbps-project")),
           ("sbps.core.decode.MAX_IMS", "sbps.sources.catalog.ims.MAX_BODY", "sbps.sources.catalog.ims._MAX_BODY"))
MANIFEST = Kind("manifests (raw bytes through parse_manifest)",
                json.dumps(VALID_MANIFEST).encode(),
                (MARK, _template(VALID_MANIFEST, "artifacts"),
                 _template(VALID_MANIFEST, "artifacts", "0", "link"),
                 _template(VALID_MANIFEST, "version")),
                ("sbps.core.decode.MAX_MANIFEST", "sbps.sources.catalog.rootfs.MAX_MANIFEST"))
CLAIMS = Kind("claim and key-index objects (raw bytes through the claim codec)",
              claim_to_bytes(claim_from_dict(CLAIM, "s3://b/.sbps/luns/7", 7)),
              (MARK, _template(CLAIM, "holders"), _template(CLAIM, "identity_key"),
               _template(CLAIM, "write_id")),
              ("sbps.core.decode.MAX_CLAIM", "sbps.sources.claims.store.MAX_BODY",
               "sbps.sources.claims.store._MAX_BODY"))
TENANT_MAP_DOC = {"nodes": ["iqn.2026-01.test:n1"],
                  "tenants": {"red": {"initiators": ["iqn.2026-01.test:red*"]}}}
TENANT_MAP = Kind("tenant maps (raw bytes of a .json file through load_tenant_map)",
                  json.dumps(TENANT_MAP_DOC).encode(),
                  (MARK, _template(TENANT_MAP_DOC, "nodes"),
                   _template(TENANT_MAP_DOC, "tenants", "red", "initiators")),
                  ("sbps.core.decode.MAX_BYTES",))
K8S_NODE = {"kind": "Node", "metadata": {"name": "ncn-w001", "labels": {"iscsi": "sbps"}}}
K8S = Kind("Kubernetes node answers (raw bytes through the k8s-label gate, over HTTP)",
           json.dumps(K8S_NODE).encode(),
           (MARK, _template(K8S_NODE, "metadata"), _template(K8S_NODE, "metadata", "labels")),
           ("sbps.publish.gate.MAX_NODE",))
SPIRE = [{"svids": [{"spiffe_id": "spiffe://shasta/ncn/workload/sbps-marshal",
                     "svid": "eyJhbGciOiJub25lIn0.eyJleHAiOjF9."}]}]
TOKEN = Kind("token command output (raw bytes through select_token)",
             json.dumps(SPIRE).encode(),
             (MARK, _template(SPIRE, "0", "svids"), _template(SPIRE, "0", "svids", "0")),
             ("sbps.sources.catalog.auth.MAX_TOKEN_OUTPUT",))
INDEX_BODY = index_to_bytes(IndexRecord(7, KEY, sha224(KEY), 1.0))


def nest(depth: int, shape: str, closed: bool = True) -> str:
    opener, closer = SHAPES[shape]
    return opener * depth + "1" + (closer * depth if closed else "")


def depths() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(1, 64), st.integers(900, 1100), st.integers(2, MAX_DEPTH),
                     st.sampled_from((10_000, MAX_DEPTH)))


def broken(valid: bytes) -> st.SearchStrategy[bytes]:
    n = len(valid)
    return st.one_of(
        st.integers(0, n - 1).map(lambda i: valid[:i]),
        st.tuples(st.integers(0, n - 1), st.integers(1, 255)).map(
            lambda t: valid[:t[0]] + bytes([valid[t[0]] ^ t[1]]) + valid[t[0] + 1:]),
        st.tuples(st.integers(0, n), st.sampled_from(BAD_UTF8)).map(
            lambda t: valid[:t[0]] + t[1] + valid[t[0]:]),
        st.just(b"\xef\xbb\xbf" + valid), st.just(valid.decode().encode("utf-16")),
        st.just(valid + b"\x00"), st.just(valid.replace(b'"', b"'")))


def nested(kind: Kind) -> st.SearchStrategy[bytes]:
    return st.builds(lambda template, depth, shape, closed: template.replace(
        MARK, nest(depth, shape, closed), 1).encode("utf-8", "surrogatepass"),
        st.sampled_from(kind.templates), depths(), st.sampled_from(sorted(SHAPES)),
        st.booleans())


def grown(template: str, size: int, form: str) -> bytes:
    """``template`` with ``MARK`` replaced so the document is ``size`` bytes (or just over
    when the template alone is larger)."""
    base = len(template.encode()) - len(MARK)
    room = max(0, size - base)
    if form == "pad":
        doc = template.replace(MARK, "1") + " " * max(0, size - base - 1)
    elif form == "string":
        doc = template.replace(MARK, '"' + "x" * max(0, room - 2) + '"')
    else:
        items = max(1, (room - 1) // 2)
        doc = template.replace(MARK, "[" + ",".join("0" * items) + "]")
    return doc.encode()


def sized(kind: Kind) -> st.SearchStrategy[bytes]:
    top = min(kind.limit, DRAWN_SIZE)
    return st.builds(grown, st.sampled_from(kind.templates),
                     st.one_of(st.integers(1, top), st.just(top)),
                     st.sampled_from(("pad", "string", "list")))


def documents(kind: Kind) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), broken(kind.valid), nested(kind), sized(kind))


def boundary(kind: Kind) -> list[tuple[str, bytes]]:
    """The valid document padded to exactly the limit and to one byte over it, and (for
    limits up to 16 MiB: a list of millions of items costs gigabytes) grown to the limit by
    a long list."""
    limit = kind.limit
    out = [(f"{limit} bytes (padded)", kind.valid + b" " * (limit - len(kind.valid))),
           (f"{limit + 1} bytes (padded)", kind.valid + b" " * (limit + 1 - len(kind.valid)))]
    if limit <= 16 << 20:
        out.append((f"{limit} bytes (a long list)", grown(kind.templates[1], limit, "list")))
    return out
