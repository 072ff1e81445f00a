"""The pdns registrar against a real PowerDNS (sqlite3 backend, HTTP API) on loopback.

Every check queries PowerDNS's DNS port with dnspython; nothing trusts the registrar.
Interleavings at the read-modify-write step are injected through the registrar's
``on_step`` seam, so they happen the same way every run.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sbps.config import Config, DnsConfig, NodeConfig
from sbps.core.errors import UpstreamPermanentError, UpstreamTemporaryError
from sbps.publish.dns import make_registrar
from sbps.publish.dns.pdns import PdnsRegistrar
from tests.fixtures.dns import BASE, DOMAIN, SYSTEM, PdnsServer, query

SRV_HSN = f"_sbps-hsn._tcp.{BASE}"
SRV_NMN = f"_sbps-nmn._tcp.{BASE}"


def host(nnn: str, net: str) -> str:
    return f"iscsi-server-id-{nnn}.{net}.{BASE}"


def srv(nnn: str, net: str) -> str:
    return f"1 0 3260 {host(nnn, net)}"


def worker(server: PdnsServer, hostname: str, hsn: str, nmn: str, *,
           key_file: Path | None = None, url: str | None = None,
           on_step: Callable[[str, str], Awaitable[None]] | None = None) -> PdnsRegistrar:
    cfg = dataclasses.replace(
        Config(),
        node=NodeConfig(hostname=hostname, system_name=SYSTEM, site_domain=DOMAIN),
        dns=DnsConfig(mode="pdns", pdns_url=url or server.url,
                      pdns_api_key_file=str(key_file or server.api_key_file), ttl=600,
                      hsn_address=hsn, nmn_address=nmn, timeout=2.0))
    registrar = make_registrar(cfg, hostname)
    assert isinstance(registrar, PdnsRegistrar)
    registrar.on_step, registrar.settle = on_step, 0.01
    return registrar


async def test_two_workers_share_the_srv_rrset_and_withdraw_only_their_own(
        pdns_server: PdnsServer) -> None:
    w1 = worker(pdns_server, "ncn-w001", "10.1.0.1", "10.2.0.1")
    w2 = worker(pdns_server, "ncn-w002", "10.1.0.2", "10.2.0.2")
    await w1.ensure(True)
    await w2.ensure(True)
    assert query(pdns_server.port, SRV_HSN, "SRV") == {srv("001", "hsn"), srv("002", "hsn")}
    assert query(pdns_server.port, SRV_NMN, "SRV") == {srv("001", "nmn"), srv("002", "nmn")}
    assert query(pdns_server.port, host("002", "hsn"), "A") == {"10.1.0.2"}
    assert query(pdns_server.port, host("001", "nmn"), "TXT") == {'"sbps-owner=ncn-w001"'}
    serial = query(pdns_server.port, BASE, "SOA")
    await w1.ensure(True)  # in sync: writes nothing
    assert query(pdns_server.port, BASE, "SOA") == serial

    await w1.ensure(False)
    assert query(pdns_server.port, SRV_HSN, "SRV") == {srv("002", "hsn")}
    assert query(pdns_server.port, SRV_NMN, "SRV") == {srv("002", "nmn")}
    assert query(pdns_server.port, host("001", "hsn"), "A") == set()
    assert query(pdns_server.port, host("001", "hsn"), "TXT") == set()
    assert query(pdns_server.port, host("002", "nmn"), "A") == {"10.2.0.2"}
    await w2.ensure(False)
    assert query(pdns_server.port, SRV_HSN, "SRV") == set()


def interleave(rrset: str) -> tuple[Callable[[str, str], Awaitable[None]],
                                     Callable[[str, str], Awaitable[None]], list[str]]:
    """Hooks for two registrars that, on their first attempt at ``rrset``: both read, then
    the first writes, then the second writes (its REPLACE is built from the stale read),
    then both read back."""
    read_both, written_both = asyncio.Barrier(2), asyncio.Barrier(2)
    first_written = asyncio.Event()
    steps: list[str] = []

    def hook(first: bool) -> Callable[[str, str], Awaitable[None]]:
        async def on_step(what: str, name: str) -> None:
            label = f"{'first' if first else 'second'} {what}"
            if name != rrset or label in steps:
                return
            steps.append(label)
            if what == "read":
                await read_both.wait()
                if not first:
                    await first_written.wait()
            else:
                if first:
                    first_written.set()
                await written_both.wait()
        return on_step

    return hook(True), hook(False), steps


async def test_interleaved_read_modify_write_keeps_both(pdns_server: PdnsServer) -> None:
    """The second writer's REPLACE drops the first's entry; the first sees that when it
    reads back and merges again."""
    first, second, steps = interleave(SRV_HSN)
    w1 = worker(pdns_server, "ncn-w001", "10.1.0.1", "10.2.0.1", on_step=first)
    w2 = worker(pdns_server, "ncn-w002", "10.1.0.2", "10.2.0.2", on_step=second)
    await asyncio.gather(w1.ensure(True), w2.ensure(True))
    assert sorted(steps[:2]) == ["first read", "second read"]
    assert steps[2:] == ["first written", "second written"]
    assert query(pdns_server.port, SRV_HSN, "SRV") == {srv("001", "hsn"), srv("002", "hsn")}
    assert query(pdns_server.port, SRV_NMN, "SRV") == {srv("001", "nmn"), srv("002", "nmn")}


async def test_interleaved_withdrawal_and_registration(pdns_server: PdnsServer) -> None:
    """w1 withdraws while w2 registers from a read that still holds w1's entry: w2's write
    puts it back, w1 sees that when it reads back and removes it again, keeping w2's."""
    w1 = worker(pdns_server, "ncn-w001", "10.1.0.1", "10.2.0.1")
    await w1.ensure(True)
    first, second, steps = interleave(SRV_HSN)
    w1.on_step = first
    w2 = worker(pdns_server, "ncn-w002", "10.1.0.2", "10.2.0.2", on_step=second)
    await asyncio.gather(w1.ensure(False), w2.ensure(True))
    assert sorted(steps[:2]) == ["first read", "second read"]
    assert steps[2:] == ["first written", "second written"]
    assert query(pdns_server.port, SRV_HSN, "SRV") == {srv("002", "hsn")}
    assert query(pdns_server.port, SRV_NMN, "SRV") == {srv("002", "nmn")}
    assert query(pdns_server.port, host("001", "hsn"), "A") == set()


async def test_records_deleted_by_hand_come_back(pdns_server: PdnsServer) -> None:
    w1 = worker(pdns_server, "ncn-w001", "10.1.0.1", "10.2.0.1")
    await w1.ensure(True)
    pdns_server.api("PATCH", f"/zones/hsn.{BASE}", {"rrsets": [
        {"name": host("001", "hsn"), "type": "A", "changetype": "DELETE"}]})
    pdns_server.api("PATCH", f"/zones/{BASE}", {"rrsets": [
        {"name": SRV_NMN, "type": "SRV", "changetype": "DELETE"}]})
    assert query(pdns_server.port, host("001", "hsn"), "A") == set()
    await w1.ensure(True)
    assert query(pdns_server.port, host("001", "hsn"), "A") == {"10.1.0.1"}
    assert query(pdns_server.port, SRV_NMN, "SRV") == {srv("001", "nmn")}


async def test_field_records_and_foreign_names(pdns_server: PdnsServer) -> None:
    """An SRV entry written by the field script stays; an unmarked A record with another
    address is someone else's and is left alone."""
    pdns_server.api("PATCH", f"/zones/{BASE}", {"rrsets": [
        {"name": SRV_HSN, "type": "SRV", "ttl": 3600, "changetype": "REPLACE",
         "records": [{"content": srv("009", "hsn"), "disabled": False}]}]})
    pdns_server.api("PATCH", f"/zones/nmn.{BASE}", {"rrsets": [
        {"name": host("001", "nmn"), "type": "A", "ttl": 3600, "changetype": "REPLACE",
         "records": [{"content": "192.0.2.9", "disabled": False}]}]})
    w1 = worker(pdns_server, "ncn-w001", "10.1.0.1", "10.2.0.1")
    with pytest.raises(UpstreamPermanentError, match="owned by someone else"):
        await w1.ensure(True)
    assert query(pdns_server.port, SRV_HSN, "SRV") == {srv("009", "hsn"), srv("001", "hsn")}
    assert query(pdns_server.port, SRV_NMN, "SRV") == set()
    assert query(pdns_server.port, host("001", "nmn"), "A") == {"192.0.2.9"}
    with pytest.raises(UpstreamPermanentError):
        await w1.ensure(False)
    assert query(pdns_server.port, SRV_HSN, "SRV") == {srv("009", "hsn")}
    assert query(pdns_server.port, host("001", "nmn"), "A") == {"192.0.2.9"}


async def test_a_wrong_api_key_is_a_clear_error(pdns_server: PdnsServer,
                                                tmp_path: Path) -> None:
    key_file = tmp_path / "wrong.key"
    key_file.write_text("not-the-key\n")
    w1 = worker(pdns_server, "ncn-w001", "10.1.0.1", "10.2.0.1", key_file=key_file)
    with pytest.raises(UpstreamPermanentError, match="API key") as err:
        await w1.ensure(True)
    assert "not-the-key" not in str(err.value)
    assert query(pdns_server.port, SRV_HSN, "SRV") == set()


async def test_server_down_is_a_temporary_error_and_recovers(
        pdns_server: PdnsServer) -> None:
    w1 = worker(pdns_server, "ncn-w001", "10.1.0.1", "10.2.0.1")
    await w1.ensure(True)
    pdns_server.stop()
    with pytest.raises(UpstreamTemporaryError, match="PowerDNS API"):
        await w1.ensure(True)
    pdns_server.start()
    pdns_server.api("PATCH", f"/zones/{BASE}", {"rrsets": [
        {"name": SRV_HSN, "type": "SRV", "changetype": "DELETE"}]})
    await w1.ensure(True)
    assert query(pdns_server.port, SRV_HSN, "SRV") == {srv("001", "hsn")}
