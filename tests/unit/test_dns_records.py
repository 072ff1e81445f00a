"""Pure parts of DNS registration: names, server id, ownership, zones, TSIG key files,
interface addresses and the registrar choice."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

from sbps.config import Config, DnsConfig, NodeConfig, TargetConfig
from sbps.core.errors import ConfigError, InputError, UpstreamTemporaryError
from sbps.core.interfaces import NoDns
from sbps.publish.dns import PdnsRegistrar, Rfc2136Registrar, make_registrar, records, tsig
from sbps.publish.dns.addresses import interface_address, network_addresses
from sbps.publish.dns.records import RecordOwnership

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def cfg(**dns: object) -> Config:
    return dataclasses.replace(
        Config(), node=NodeConfig(system_name="sys1", site_domain="example.test"),
        dns=dataclasses.replace(DnsConfig(), **dns))  # type: ignore[arg-type]


def test_names_and_data_follow_the_facts_file() -> None:
    hsn, nmn = records.desired(cfg(), "ncn-w001", {"hsn": "10.1.0.1", "nmn": "10.2.0.1"})
    assert hsn.srv_name == "_sbps-hsn._tcp.sys1.example.test."
    assert hsn.srv_data == "1 0 3260 iscsi-server-id-001.hsn.sys1.example.test."
    assert hsn.host == "iscsi-server-id-001.hsn.sys1.example.test."
    assert (hsn.address, hsn.ttl, hsn.owner) == ("10.1.0.1", 3600, "sbps-owner=ncn-w001")
    assert nmn.host == "iscsi-server-id-001.nmn.sys1.example.test."


@pytest.mark.parametrize(("hostname", "configured", "nnn"), [
    ("ncn-w001", "", "001"), ("ncn-w1234", "", "1234"), ("worker-a", "7", "007"),
    ("ncn-w001", "042", "042"),
])
def test_server_id(hostname: str, configured: str, nnn: str) -> None:
    c = dataclasses.replace(cfg(), node=NodeConfig(server_id=configured))
    assert records.server_id(c, hostname) == nnn


@pytest.mark.parametrize(("hostname", "configured"), [("worker-a", ""), ("ncn-w001", "x1")])
def test_server_id_errors_name_the_key(hostname: str, configured: str) -> None:
    c = dataclasses.replace(cfg(), node=NodeConfig(server_id=configured))
    with pytest.raises(ConfigError, match="node.server_id"):
        records.server_id(c, hostname)


def test_missing_system_name_is_a_config_error() -> None:
    c = dataclasses.replace(cfg(), node=NodeConfig(site_domain="example.test"))
    with pytest.raises(ConfigError, match="node.system_name"):
        records.desired(c, "ncn-w001")


def test_portal_port_of_the_network_address() -> None:
    c = dataclasses.replace(cfg(), target=TargetConfig(portals=("10.1.0.1:3261", "10.2.0.1"),
                                                       port=3260))
    hsn, nmn = records.desired(c, "ncn-w001", {"hsn": "10.1.0.1", "nmn": "10.2.0.1"})
    assert hsn.srv_data.startswith("1 0 3261 ") and nmn.srv_data.startswith("1 0 3260 ")


@pytest.mark.parametrize(("a", "txt", "expected"), [
    (set(), set(), RecordOwnership.FREE),
    (set(), {"unrelated"}, RecordOwnership.FREE),
    ({"10.1.0.9"}, {"sbps-owner=ncn-w001"}, RecordOwnership.OURS),
    ({"10.1.0.1"}, set(), RecordOwnership.ADOPTABLE),
    ({"10.1.0.9"}, set(), RecordOwnership.FOREIGN),
    ({"10.1.0.1"}, {"sbps-owner=ncn-w002"}, RecordOwnership.FOREIGN),
    (set(), {"sbps-owner=ncn-w002"}, RecordOwnership.FOREIGN),
    ({"10.1.0.1"}, {"sbps-owner=ncn-w001", "sbps-owner=ncn-w002"}, RecordOwnership.FOREIGN),
])
def test_ownership(a: set[str], txt: set[str], expected: RecordOwnership) -> None:
    rec = records.desired(cfg(networks=("hsn",)), "ncn-w001", {"hsn": "10.1.0.1"})[0]
    assert records.ownership(rec, a, txt) is expected


def test_an_unmarked_record_is_never_adoptable_without_an_address() -> None:
    rec = records.desired(cfg(networks=("hsn",)), "ncn-w001")[0]
    assert records.ownership(rec, {"10.1.0.1"}, set()) is RecordOwnership.FOREIGN


def test_srv_entry_is_ours_by_target() -> None:
    rec = records.desired(cfg(networks=("hsn",)), "ncn-w001")[0]
    assert records.is_ours_srv("1 0 3261 ISCSI-SERVER-ID-001.hsn.sys1.example.test.", rec)
    assert not records.is_ours_srv("1 0 3260 iscsi-server-id-002.hsn.sys1.example.test.", rec)


def test_zone_from_list_takes_the_longest() -> None:
    zones = ("example.test", "sys1.example.test.", "hsn.sys1.example.test")
    assert records.zone_from_list("a.hsn.sys1.example.test.", zones) == "hsn.sys1.example.test."
    assert records.zone_from_list("_x._tcp.sys1.example.test.", zones) == "sys1.example.test."
    assert records.zone_from_list("a.other.", zones) is None


@pytest.mark.parametrize("text", [
    f'key "sbps-key" {{\n  algorithm hmac-sha256;\n  secret "{SECRET}";\n}};\n',
    f"key sbps-key {{ secret \"{SECRET}\"; }};",
    f"sbps-key:hmac-sha256:{SECRET}\n", f"# comment\nsbps-key:{SECRET}",
])
def test_tsig_key_formats(text: str) -> None:
    key = tsig.parse(text)
    assert (key.name, key.algorithm) == ("sbps-key", "hmac-sha256")
    assert key.secret == base64.b64decode(SECRET)
    assert SECRET not in repr(key)


def test_tsig_algorithm_from_bind_file() -> None:
    key = tsig.parse(f'key "k" {{ algorithm hmac-sha512; secret "{SECRET}"; }};')
    assert key.algorithm == "hmac-sha512"


@pytest.mark.parametrize(("text", "reason"), [
    ("k:hmac-foo:" + SECRET, "unknown algorithm"), ("k:hmac-sha256:not base64!", "base64"),
    ('key "k" { algorithm hmac-sha256; };', "no secret"), ("nonsense", "expected key"),
])
def test_tsig_errors_never_show_the_secret(text: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason) as err:
        tsig.parse(text, "/etc/sbps/tsig.key")
    assert "dns.tsig_key_file" in str(err.value) and "/etc/sbps/tsig.key" in str(err.value)
    assert SECRET not in str(err.value)


def test_tsig_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        tsig.load(str(tmp_path / "absent.key"))


def test_interface_address_of_loopback() -> None:
    assert interface_address("lo") == "127.0.0.1"


def test_addresses_from_config_and_interfaces() -> None:
    c = cfg(hsn_address="10.1.0.1", nmn_address="", nmn_interface="lo")
    assert network_addresses(c) == {"hsn": "10.1.0.1", "nmn": "127.0.0.1"}


def test_missing_interface_names_interface_and_keys() -> None:
    c = cfg(hsn_address="", hsn_interface="sbps-nonexistent0")
    with pytest.raises(UpstreamTemporaryError, match="'sbps-nonexistent0'.*dns.hsn_interface"
                       ".*dns.hsn_address"):
        network_addresses(c)


def test_make_registrar_by_mode() -> None:
    c = dataclasses.replace(cfg(), node=NodeConfig(system_name="s", site_domain="d"))
    assert isinstance(make_registrar(c, "ncn-w001"), NoDns)
    assert isinstance(make_registrar(cfg(mode="rfc2136"), "ncn-w001"), Rfc2136Registrar)
    assert isinstance(make_registrar(cfg(mode="pdns"), "ncn-w001"), PdnsRegistrar)
    with pytest.raises(ConfigError, match="dns.hsn_address"):
        make_registrar(cfg(mode="pdns", hsn_address="10.1.0"), "ncn-w001")
    with pytest.raises(ConfigError, match="node.server_id"):
        make_registrar(cfg(mode="rfc2136"), "worker-a")
