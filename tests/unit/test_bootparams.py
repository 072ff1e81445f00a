"""The root=sbps-s3 grammar: round trip, the published example, and every malformed field."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sbps.core import identity
from sbps.core.errors import InputError
from sbps.core.model import S3Url
from sbps.publish.boot import params as bootparams
from sbps.publish.boot.params import BootParams, generate, parse

EXAMPLE = ("root=sbps-s3:s3://boot-images/4fab0408-0bfe-4668-b957-964f8ff0e4e9/rootfs:"
           "b6ea7a2314d54dead0c94223863b3488-1977:sbps:v1:iqn.2023-06.csm.iscsi:"
           "_sbps-hsn._tcp.my-system.my-site-domain:300")
ETAG = "b6ea7a2314d54dead0c94223863b3488"
HEAD = f"root=sbps-s3:s3://boot-images/img/rootfs:{ETAG}"
TAIL = "_sbps-hsn._tcp.sys.example.com"

_alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
_label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")
_bucket = st.from_regex(r"\A[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]\Z").filter(
    lambda b: ".." not in b)
_segment = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+=,@",
                   min_size=1, max_size=20).filter(lambda s: s not in (".", ".."))
_key = st.lists(_segment, min_size=1, max_size=5).map("/".join)
_hex32 = st.text("0123456789abcdef", min_size=32, max_size=32)
_etag = st.one_of(_hex32, st.tuples(_hex32, st.integers(1, 10000)).map(
    lambda t: f"{t[0]}-{t[1]}"))
_iqn = st.sampled_from(["iqn.2023-06.csm.iscsi", "iqn.2024-12.org.example",
                        "iqn.2023-06.csm.iscsi:pool-a", "iqn.2001-04.com.ex:a:b.c"])


@st.composite
def boot_params(draw: st.DrawFn) -> BootParams:
    domain = ".".join(draw(st.lists(_label, min_size=1, max_size=3)))
    srv = bootparams.srv_name(draw(st.sampled_from(bootparams.NETWORKS)), draw(_label),
                              domain)
    return BootParams(path=S3Url(draw(_bucket), draw(_key)), etag=draw(_etag), srv_name=srv,
                      iqn_prefix=draw(_iqn), timeout=draw(st.integers(1, 86400)),
                      ramroot=draw(st.booleans()))


@given(boot_params())
def test_generate_then_parse_gives_the_same_fields(params: BootParams) -> None:
    text = generate(params)
    assert parse(text) == params
    assert parse(text[len("root="):]) == params
    assert parse(f"console=ttyS0,115200 {text} quiet") == params
    tail = f":{params.srv_name}:{params.timeout}" + (":1" if params.ramroot else "")
    assert text.endswith(tail)
    assert parse(text).wwid == identity.rootfs(params.path, params.etag).wwid


def test_published_example_parses_with_the_right_fields() -> None:
    p = parse(EXAMPLE)
    assert p.path == S3Url("boot-images", "4fab0408-0bfe-4668-b957-964f8ff0e4e9/rootfs")
    assert p.etag == "b6ea7a2314d54dead0c94223863b3488-1977"
    assert (p.transport, p.schema) == ("sbps", "v1")
    assert p.iqn_prefix == "iqn.2023-06.csm.iscsi"
    assert p.srv_name == "_sbps-hsn._tcp.my-system.my-site-domain"
    assert (p.network, p.domain) == ("hsn", "my-system.my-site-domain")
    assert (p.timeout, p.ramroot) == (300, False)
    ident = identity.rootfs("s3://boot-images/4fab0408-0bfe-4668-b957-964f8ff0e4e9/rootfs",
                            "b6ea7a2314d54dead0c94223863b3488-1977")
    assert (p.serial, p.wwid) == (ident.serial, ident.wwid)
    assert p.wwid == "36001405" + p.serial[:25]
    assert generate(p) == EXAMPLE


@pytest.mark.parametrize(("suffix", "ramroot", "warned"), [
    ("", False, False), (":", False, False), (":0", False, False), (":1", True, False),
    (":yes", True, True), (":false", True, True), (":OFF", True, True)])
def test_ramroot_as_the_client_reads_it(suffix: str, ramroot: bool, warned: bool) -> None:
    """Any value but '0' or empty is true (docs-csm); a surprising one is warned about."""
    p = parse(EXAMPLE + suffix)
    assert p.ramroot is ramroot
    assert bool(p.notes) is warned
    if warned:
        assert "ramroot" in p.notes[0] and "true" in p.notes[0]


def test_case_of_the_etag_is_kept_and_the_iqn_prefix_accepted() -> None:
    upper = parse(EXAMPLE.replace("b6ea7a2314d54dead0c94223863b3488",
                                  "B6EA7A2314D54DEAD0C94223863B3488"))
    assert upper.etag == "B6EA7A2314D54DEAD0C94223863B3488-1977"
    assert upper.wwid == identity.rootfs(upper.path, upper.etag).wwid != parse(EXAMPLE).wwid
    assert parse(EXAMPLE.replace("iqn.2023-06", "IQN.2023-06")).iqn_prefix == \
        "IQN.2023-06.csm.iscsi"


def test_empty_timeout_is_the_default() -> None:
    assert parse(EXAMPLE[:-len("300")]).timeout == 300
    assert parse(EXAMPLE[:-len("300")] + ":1").ramroot


def test_command_line_uses_the_last_root_and_strips_quotes() -> None:
    other = EXAMPLE.replace(":300", ":42")
    assert parse(f'root=/dev/sda1 ip=dhcp "{EXAMPLE}"').timeout == 300
    assert parse(f"{EXAMPLE} quiet {other}").timeout == 42
    assert parse(f'root="{EXAMPLE[5:]}" x="a b"').timeout == 300


def test_iqn_prefix_with_colons() -> None:
    text = EXAMPLE.replace("iqn.2023-06.csm.iscsi", "iqn.2023-06.csm.iscsi:a:b")
    assert parse(text).iqn_prefix == "iqn.2023-06.csm.iscsi:a:b"


def test_construction_validates_every_field() -> None:
    good = parse(EXAMPLE)
    for field, bad in [("etag", "nothex"), ("srv_name", "x"), ("iqn_prefix", "IQN"),
                       ("timeout", 0), ("transport", "dvs"), ("schema", "v9"),
                       ("path", S3Url("boot-images", "a:b"))]:
        with pytest.raises(InputError) as err:
            dataclasses.replace(good, **{field: bad})
        assert err.value.field == field


@pytest.mark.parametrize(("args", "field"), [
    (("cmn", "sys", "example.com"), "network"),
    (("hsn", "", "example.com"), "system"),
    (("hsn", "a.b", "example.com"), "system"),
    (("hsn", "sys", ""), "site_domain"),
    (("hsn", "sys", "bad_domain.com"), "site_domain"),
])
def test_srv_name_names_the_bad_part(args: tuple[str, str, str], field: str) -> None:
    with pytest.raises(InputError) as err:
        bootparams.srv_name(*args)
    assert err.value.field == field


def test_srv_name_and_passthrough() -> None:
    srv = bootparams.srv_name("nmn", "my-system", "my-site-domain")
    assert srv == "_sbps-nmn._tcp.my-system.my-site-domain"
    p = BootParams(S3Url("boot-images", "x/rootfs"), ETAG, srv, timeout=120, ramroot=True)
    assert bootparams.passthrough(p) == f"sbps:v1:iqn.2023-06.csm.iscsi:{srv}:120:1"


def test_tokens_split_like_the_kernel() -> None:
    assert bootparams.tokens(' a  b="c d"\te\n') == ["a", 'b="c d"', "e"]
