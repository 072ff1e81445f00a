"""Tolerant parsing of IMS records and manifests: every odd shape seen in the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbps.core.model import Arch, ArtifactType, ImageRecord, Manifest, Problem, S3Url
from sbps.sources.catalog.parse import parse_created, parse_manifest, parse_record

IMG = "4fab0408-0bfe-4668-b957-964f8ff0e4e9"
ROOTFS = "application/vnd.cray.image.rootfs.squashfs"
WHEN = datetime(2023, 6, 1, 12, 0, 0, tzinfo=UTC)


def record(**overrides: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": IMG, "name": "compute-23.7", "created": "2023-06-01T12:00:00Z",
        "arch": "x86_64",
        "link": {"path": f"s3://boot-images/{IMG}/manifest.json", "etag": "abc123",
                 "type": "s3"},
        "metadata": {"sbps-project": "true"},
    }
    for key, value in overrides.items():
        if value is ...:
            rec.pop(key, None)
        else:
            rec[key] = value
    return rec


def manifest(*artifacts: dict[str, Any], **top: Any) -> bytes:
    doc = {"version": "1.0", "created": "2023-06-01 12:00:00",
           "artifacts": list(artifacts)}
    doc.update(top)
    return json.dumps(doc).encode()


def art(kind: str = ROOTFS, **link: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"path": f"s3://boot-images/{IMG}/rootfs",
                            "etag": "b6ea7a2314d54dead0c94223863b3488-1977", "type": "s3"}
    for key, value in link.items():
        if value is ...:
            base.pop(key)
        else:
            base[key] = value
    return {"link": base, "md5": "0123456789abcdef0123456789abcdef", "type": kind}


def test_good_record() -> None:
    warnings: list[Problem] = []
    rec = parse_record(record(), 0, warnings)
    assert rec == ImageRecord(
        ims_id=IMG, name="compute-23.7", created=WHEN, arch=Arch.X86_64,
        manifest=S3Url("boot-images", f"{IMG}/manifest.json"), manifest_etag="abc123",
        metadata={"sbps-project": "true"})
    assert warnings == []


@pytest.mark.parametrize(("overrides", "check"), [
    ({"link": ...}, lambda r: r.manifest is None),
    ({"link": None}, lambda r: r.manifest is None),
    ({"metadata": ...}, lambda r: not r.has_metadata and r.metadata == {}),
    ({"metadata": None}, lambda r: not r.has_metadata),
    ({"metadata": {}}, lambda r: r.has_metadata and r.metadata == {}),
    ({"metadata": [{"key": "sbps-project", "value": "true"}]},
     lambda r: r.metadata == {"sbps-project": "true"}),
    ({"metadata": {"sbps-project": True}}, lambda r: r.metadata == {"sbps-project": "true"}),
    ({"arch": ...}, lambda r: r.arch is Arch.X86_64),
    ({"arch": "aarch64"}, lambda r: r.arch is Arch.AARCH64),
    ({"created": 1685620800}, lambda r: r.created == WHEN),
    ({"created": "2023-06-01 12:00:00"}, lambda r: r.created == WHEN),
    ({"created": "not a date"}, lambda r: r.created is None),
    ({"name": ...}, lambda r: r.name == IMG),
    ({"link": {"path": f"s3://boot-images/{IMG}/manifest.json", "etag": None}},
     lambda r: r.manifest_etag is None),
    ({"link": {"path": f"s3://boot-images/{IMG}/manifest.json", "etag": '"q1"'}},
     lambda r: r.manifest_etag == "q1"),
], ids=["no-link", "null-link", "no-metadata", "null-metadata", "empty-metadata",
        "metadata-list", "metadata-bool", "no-arch", "aarch64", "created-epoch",
        "created-space", "created-garbage", "no-name", "null-link-etag", "quoted-etag"])
def test_harmless_variants_accepted(overrides: dict[str, Any], check: Any) -> None:
    rec = parse_record(record(**overrides), 0, [])
    assert isinstance(rec, ImageRecord), rec
    assert check(rec)


@pytest.mark.parametrize(("raw", "field", "code"), [
    ("just a string", "record", "wrong_type"),
    (record(id=...), "id", "wrong_type"),
    (record(id=42), "id", "wrong_type"),
    (record(id="../../etc"), "id", "unsafe_id"),
    (record(id="a\nb"), "id", "unsafe_id"),
    (record(arch="sparc"), "arch", "unknown_arch"),
    (record(arch=7), "arch", "wrong_type"),
    (record(name=["x"]), "name", "wrong_type"),
    (record(name="bad\x00name"), "name", "unsafe_name"),
    (record(link="s3://boot-images/x"), "link", "wrong_type"),
    (record(link={"etag": "x"}), "link.path", "no_link"),
    (record(link={"path": 5, "etag": "x"}), "link.path", "wrong_type"),
    (record(link={"path": "s3://boot-images/../etc/passwd", "etag": "x"}), "link.path",
     "unsafe_key"),
    (record(link={"path": "/etc/passwd", "etag": "x"}), "link.path", "unsafe_key"),
    (record(link={"path": "s3://boot-images/a", "etag": 5}), "link.etag", "wrong_type"),
    (record(link={"path": "s3://boot-images/a", "etag": "x|y"}), "link.etag", "bad_etag"),
    (record(link={"path": "http://x/a", "etag": "x", "type": "http"}), "link.type",
     "unsupported_link"),
    (record(metadata="sbps-project=true"), "metadata", "wrong_type"),
    (record(metadata=[["sbps-project", "true"]]), "metadata[0]", "wrong_type"),
])
def test_bad_records_become_problems(raw: Any, field: str, code: str) -> None:
    problem = parse_record(raw, 3, [])
    assert isinstance(problem, Problem), problem
    assert (problem.field, problem.code) == (field, code)
    assert problem.obj in (IMG, "record[3]")


def test_warnings_name_the_normalisation() -> None:
    warnings: list[Problem] = []
    parse_record(record(metadata=[{"key": "sbps-project", "value": "true"}],
                        created=1685620800), 0, warnings)
    assert {w.code for w in warnings} == {"metadata_list", "created_format"}
    assert all(w.obj == IMG for w in warnings)


@pytest.mark.parametrize("value", [
    "2023-06-01T12:00:00Z", "2023-06-01T12:00:00+00:00", "2023-06-01T14:00:00+02:00",
    "2023-06-01T12:00:00", "2023-06-01 12:00:00", "2023-06-01T12:00:00.000000Z",
    "2023-06-01T12:00:00.000000000Z", 1685620800, 1685620800.0, "1685620800",
    1685620800000, "Thu, 01 Jun 2023 12:00:00 GMT", "2023/06/01 12:00:00", "20230601120000",
])
def test_created_formats(value: Any) -> None:
    assert parse_created(value)[0] == WHEN


@pytest.mark.parametrize("value", ["soon", True, {"t": 1}, float("nan"), 1e300, ""])
def test_created_unreadable_is_none_with_a_note(value: Any) -> None:
    when, note = parse_created(value)
    assert when is None and note


def test_good_manifest() -> None:
    warnings: list[Problem] = []
    m = parse_manifest(IMG, manifest(art(), art("application/vnd.cray.image.kernel")),
                       warnings)
    assert isinstance(m, Manifest)
    assert [a.type for a in m.artifacts] == [ROOTFS, "application/vnd.cray.image.kernel"]
    rootfs = m.artifacts[0]
    assert rootfs.url == S3Url("boot-images", f"{IMG}/rootfs")
    assert rootfs.etag == "b6ea7a2314d54dead0c94223863b3488-1977"
    assert rootfs.md5 == "0123456789abcdef0123456789abcdef"
    assert m.created == WHEN
    assert warnings == []


@pytest.mark.parametrize(("body", "field", "code"), [
    (b"{not json", "manifest", "not_json"),
    (b"\xff\xfe", "manifest", "not_utf8"),
    (b"[]", "manifest", "wrong_type"),
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "manifest", "too_deep"),
    (b'{"a": "' + b"x" * (16 * 2**20) + b'"}', "manifest", "too_large"),
    (manifest(), "manifest.artifacts", "no_rootfs"),
    (json.dumps({"version": "1.0"}).encode(), "manifest.artifacts", "no_rootfs"),
    (manifest(artifacts="x"), "manifest.artifacts", "wrong_type"),
    (manifest(art("application/vnd.cray.image.kernel")), "manifest.artifacts", "no_rootfs"),
    (manifest(art(etag=...)), "manifest.artifacts[0].link.etag", "no_etag"),
    (manifest(art(etag=None)), "manifest.artifacts[0].link.etag", "no_etag"),
    (manifest(art(etag=12)), "manifest.artifacts[0].link.etag", "wrong_type"),
    (manifest(art(path="s3://boot-images/x/../../y")), "manifest.artifacts[0].link.path",
     "unsafe_key"),
    (manifest(art(path=None)), "manifest.artifacts[0].link.path", "no_link"),
    (manifest({"type": ROOTFS, "link": None}), "manifest.artifacts[0].link", "no_link"),
    (manifest({"type": ROOTFS}), "manifest.artifacts[0].link", "no_link"),
])
def test_bad_manifests_become_problems(body: bytes, field: str, code: str) -> None:
    problem = parse_manifest(IMG, body, [])
    assert isinstance(problem, Problem), problem
    assert (problem.obj, problem.field, problem.code) == (IMG, field, code)


def test_broken_non_rootfs_artifact_is_dropped_with_a_warning() -> None:
    warnings: list[Problem] = []
    kernel = art("application/vnd.cray.image.kernel", etag=None, path="s3://boot-images/k")
    m = parse_manifest(IMG, manifest(kernel, {"junk": 1}, 5, art()), warnings)
    assert isinstance(m, Manifest)
    assert [a.type for a in m.artifacts] == ["application/vnd.cray.image.kernel", ROOTFS]
    assert "artifact_ignored" in {w.code for w in warnings}


def test_second_rootfs_is_ignored_with_a_warning() -> None:
    warnings: list[Problem] = []
    m = parse_manifest(IMG, manifest(art(), art(path="s3://boot-images/other")), warnings)
    assert isinstance(m, Manifest) and len(m.artifacts) == 1
    assert "extra_rootfs" in {w.code for w in warnings}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=5),
    max_leaves=20)
FIELDS = st.fixed_dictionaries({}, optional={
    "id": st.sampled_from([IMG, "", "../x", 5]) | JSON,
    "name": JSON, "arch": st.sampled_from(["x86_64", "aarch64", "mips"]) | JSON,
    "created": JSON, "metadata": JSON,
    "link": st.none() | JSON | st.fixed_dictionaries({}, optional={
        "path": st.sampled_from([f"s3://boot-images/{IMG}/manifest.json", "s3://b/../x"])
        | JSON, "etag": JSON, "type": st.sampled_from(["s3", "x"]) | JSON}),
})


@settings(max_examples=300, deadline=None)
@given(raw=JSON | FIELDS)
def test_any_record_gives_a_record_or_a_problem(raw: Any) -> None:
    result = parse_record(raw, 0, [])
    assert isinstance(result, (ImageRecord, Problem))


@settings(max_examples=300, deadline=None)
@given(doc=JSON | st.fixed_dictionaries({}, optional={
    "version": JSON, "created": JSON,
    "artifacts": st.lists(JSON | st.fixed_dictionaries({"type": st.just(ROOTFS)}, optional={
        "link": JSON, "md5": JSON}), max_size=3)}))
def test_any_manifest_gives_a_manifest_or_a_problem(doc: Any) -> None:
    result = parse_manifest(IMG, json.dumps(doc), [])
    assert isinstance(result, (Manifest, Problem))


def test_the_dev_servers_odd_records() -> None:
    from tests.fixtures.servers import IMS_ODD_RECORDS
    records = json.loads(IMS_ODD_RECORDS.read_text())
    parsed = [parse_record(raw, n, []) for n, raw in enumerate(records)]
    assert all(isinstance(r, ImageRecord) for r in parsed), parsed
    for r in parsed:
        assert isinstance(r, ImageRecord)
        assert r.created is not None and r.created.year == 2024


def test_artifact_types_sbps_reads_are_members_others_stay_text() -> None:
    other = "application/vnd.cray.image.initrd.debug"
    m = parse_manifest(IMG, manifest(art(), art("application/vnd.cray.image.kernel"),
                                     art(other)), [])
    assert isinstance(m, Manifest)
    assert [a.type for a in m.artifacts] == [ArtifactType.ROOTFS, ArtifactType.KERNEL, other]
    assert m.artifacts[0].type is ArtifactType.ROOTFS
    assert type(m.artifacts[2].type) is str
    assert m.first(ArtifactType.KERNEL) is m.artifacts[1]
    assert m.first(ArtifactType.INITRD) is None
