"""``sbpsctl peers check [URL...]``: prove that workers agree on every image's identity.

Owns the comparison of several workers' ``/v1/target`` and ``/v1/images``: an image whose
LUN id, serial or size differs between workers, an image a worker lacks, a LUN id that
names different images on different workers, and a fleet that mixes target backends (tgt
presents the same WWID but no ALUA, so one multipath map must not mix them). Exit 1 on any
disagreement or unreachable worker. Workers never talk to each other; this is the check.
With no URL, the workers are the ones registered in DNS under this worker's SRV name
(``sbps.publish.dns.peers``), each reached at its A record's address on ``http.port``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sbps.cli._api import add_common, api, config_of, dump, table
from sbps.core.errors import SbpsError, UpstreamPermanentError
from sbps.publish.dns import peers
from sbps.publish.dns.records import srv_name

#: Catalog states in which a worker actually exports the image.
SERVING = ("exported", "retiring")


@dataclass(frozen=True)
class Disagreement:
    kind: str  # lun_id | serial | size | missing | lun_conflict | backend | unreachable
    key: str
    detail: str
    values: Mapping[str, Any] = field(default_factory=dict)


def register(sub: Any) -> None:
    p = sub.add_parser("peers", help="compare workers")
    psub = p.add_subparsers(dest="peers_command", metavar="ACTION")
    psub.required = True
    c = psub.add_parser("check", help="report every image the workers disagree on")
    c.add_argument("urls", nargs="*", metavar="URL", help="API base URL of each worker "
                   "(default: every worker in the DNS SRV records, at its address and "
                   "http.port)")
    c.add_argument("--network", choices=("hsn", "nmn"), help="with no URL: the network whose "
                   "SRV records list the workers (default nmn when registered)")
    add_common(c)
    c.set_defaults(func=_check)


def compare(fleet: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]]
            ) -> list[Disagreement]:
    """``fleet``: worker URL -> (its /v1/target, its /v1/images). Pure."""
    out: list[Disagreement] = []
    backends = {url: t["backend"] for url, (t, _) in fleet.items()}
    if len(set(backends.values())) > 1:
        out.append(Disagreement("backend", "-", "the fleet mixes target backends", backends))
    serving: dict[str, dict[str, Mapping[str, Any]]] = {}
    for url, (_, cat) in fleet.items():
        for img in cat["images"]:
            if img["state"] in SERVING:
                serving.setdefault(img["key"], {})[url] = img
    for key, seen in sorted(serving.items()):
        for attr in ("lun_id", "serial", "size"):
            values = {url: img[attr] for url, img in seen.items()}
            if len(set(values.values())) > 1:
                out.append(Disagreement(attr, key, f"{attr} differs between workers",
                                        values))
        lacking = sorted(set(fleet) - set(seen))
        if lacking:
            states = {url: _state(fleet[url][1], key) for url in lacking}
            out.append(Disagreement("missing", key, "not exported by " + ", ".join(lacking),
                                    states))
    by_lun: dict[int, dict[str, str]] = {}
    for url, (target, _) in fleet.items():
        for lun in target["luns"]:
            by_lun.setdefault(lun["lun_id"], {})[url] = lun["key"]
    for lun_id, keys in sorted(by_lun.items()):
        if len(set(keys.values())) > 1:
            out.append(Disagreement("lun_conflict", f"lun {lun_id}", f"LUN {lun_id} names "
                                    "different images on different workers", keys))
    return out


def _state(cat: Mapping[str, Any], key: str) -> str:
    for img in cat["images"]:
        if img["key"] == key:
            return str(img["state"])
    return "absent"


def _from_dns(args: argparse.Namespace) -> list[str]:
    """The API URLs of the workers in DNS (this worker's own configuration says where)."""
    cfg = config_of(args)
    net = peers.network(cfg, args.network)
    found = peers.find(cfg, net)
    if not found:
        raise UpstreamPermanentError(f"no worker is registered under "
                                     f"{srv_name(cfg, net)} at {cfg.dns.server}")
    scheme = "https" if cfg.http.tls_cert_file else "http"
    return [f"{scheme}://{p.address}:{cfg.http.port}" for p in found]


def _check(args: argparse.Namespace) -> int:
    fleet: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
    problems: list[Disagreement] = []
    urls = args.urls or _from_dns(args)
    for url in dict.fromkeys(urls):
        client = api(args, url=url)
        try:
            fleet[url] = (client.get("/v1/target"), client.get("/v1/images"))
        except SbpsError as exc:
            hint = "" if args.urls else (" (found in DNS: its API must listen on that "
                                         "address, http.bind, at this worker's http.port)")
            problems.append(Disagreement("unreachable", url, str(exc) + hint))
    problems += compare(fleet)
    if args.json:
        workers = {url: {"iqn": t["iqn"], "backend": t["backend"], "luns": len(t["luns"]),
                         "images": len(c["images"])} for url, (t, c) in fleet.items()}
        print(dump({"ok": not problems, "workers": workers,
                    "disagreements": [asdict(p) for p in problems]}))
        return 1 if problems else 0
    for url, (t, c) in fleet.items():
        print(f"{url}: {t['iqn']} ({t['backend']}), {len(t['luns'])} LUNs, "
              f"{len(c['images'])} catalog entries")
    if not problems:
        print(f"{len(fleet)} workers agree on {sum(len(c['images']) for _, c in fleet.values())}"
              " catalog entries")
        return 0
    print(table(("problem", "key", "detail", "values"),
                [(p.kind, p.key, p.detail, ", ".join(f"{u}={v}" for u, v in
                                                     p.values.items()))
                 for p in problems]))
    return 1
