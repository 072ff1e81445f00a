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


@pytest.mark.parametrize(("suffix", "ramroot"), [
    ("", False), (":", False), (":0", False), (":1", True), (":yes", True)])
def test_ramroot_absent_empty_zero_or_set(suffix: str, ramroot: bool) -> None:
    assert parse(EXAMPLE + suffix).ramroot is ramroot


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


MALFORMED = [
    ("wrong transport", EXAMPLE.replace(":sbps:v1:", ":dvs:v1:"), "transport"),
    ("unknown schema", EXAMPLE.replace(":sbps:v1:", ":sbps:v2:"), "schema"),
    ("negative timeout", EXAMPLE.replace(":300", ":-300"), "timeout"),
    ("non-numeric timeout", EXAMPLE.replace(":300", ":5m"), "timeout"),
    ("zero timeout", EXAMPLE.replace(":300", ":0"), "timeout"),
    ("huge timeout", EXAMPLE.replace(":300", ":9999999"), "timeout"),
    ("craycps-s3 root", EXAMPLE.replace("sbps-s3:", "craycps-s3:"), "provider"),
    ("other provider", "root=live:CDLABEL=x", "provider"),
    ("local disk", "root=/dev/sda1", "provider"),
    ("path without s3://", EXAMPLE.replace("s3://", "http://"), "path"),
    ("path s3:/ only", EXAMPLE.replace("s3://", "s3:/"), "path"),
    ("path with a colon", EXAMPLE.replace("/rootfs", "/root:fs"), "path"),
    ("path with dot-dot", EXAMPLE.replace("/rootfs", "/../rootfs"), "path"),
    ("bad etag", EXAMPLE.replace("b6ea7a23", "zzea7a23"), "etag"),
    ("short etag", EXAMPLE.replace("b6ea7a23", "b6"), "etag"),
    ("uppercase etag", EXAMPLE.replace("b6ea7a23", "B6EA7A23"), "etag"),
    ("bad part count", EXAMPLE.replace("-1977", "-0"), "etag"),
    ("empty etag", EXAMPLE.replace("b6ea7a2314d54dead0c94223863b3488-1977", ""), "etag"),
    ("bad iqn prefix", EXAMPLE.replace("iqn.2023-06.csm.iscsi", "eui.123"), "iqn_prefix"),
    ("iqn with underscore", EXAMPLE.replace("csm.iscsi", "csm_iscsi"), "iqn_prefix"),
    ("no iqn prefix", EXAMPLE.replace("iqn.2023-06.csm.iscsi:", ""), "iqn_prefix"),
    ("unknown network", EXAMPLE.replace("_sbps-hsn", "_sbps-cmn"), "srv_name"),
    ("not an SRV name", EXAMPLE.replace("_sbps-hsn._tcp.", "_iscsi._udp."), "srv_name"),
    ("SRV without site domain", EXAMPLE.replace("my-system.my-site-domain", "sys"),
     "srv_name"),
    ("SRV bad label", EXAMPLE.replace("my-system", "-bad"), "srv_name"),
    ("ramroot false word", EXAMPLE + ":false", "ramroot"),
    ("extra fields", EXAMPLE + ":1:more", "ramroot"),
    ("missing etag", "root=sbps-s3:s3://boot-images/img/rootfs", "etag"),
    ("missing transport", HEAD, "transport"),
    ("missing schema", f"{HEAD}:sbps", "schema"),
    ("missing iqn prefix", f"{HEAD}:sbps:v1", "iqn_prefix"),
    ("missing SRV name", f"{HEAD}:sbps:v1:iqn.2023-06.csm.iscsi", "srv_name"),
    ("missing timeout", f"{HEAD}:sbps:v1:iqn.2023-06.csm.iscsi:{TAIL}", "timeout"),
    ("no root= on a command line", "console=ttyS0 quiet", "root"),
    ("empty", "   ", "root"),
]


@pytest.mark.parametrize(("text", "field"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_is_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(InputError) as err:
        parse(text)
    assert err.value.field == field
    assert err.value.obj == "root="
    assert f": {field}: " in str(err.value)


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
