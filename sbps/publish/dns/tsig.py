"""TSIG keys for signed RFC 2136 updates: parsing the key file.

Owns the two accepted formats, BIND's ``key "name" { algorithm hmac-sha256; secret "..."; };``
and one line ``name:algorithm:secret`` (or ``name:secret``, hmac-sha256). Must never put
the secret in a log line, an error message or a repr.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path

import dns.name
import dns.tsig

from sbps.core.errors import InputError

DEFAULT_ALGORITHM = "hmac-sha256"
ALGORITHMS = {
    "hmac-md5": dns.tsig.HMAC_MD5, "hmac-md5.sig-alg.reg.int": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1, "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256, "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
_BIND = re.compile(r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{(?P<body>[^}]*)\}', re.S)
_STMT = re.compile(r'(?P<kw>algorithm|secret)\s+"?(?P<val>[^";\s]+)"?\s*;')


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str
    secret: bytes = field(repr=False)

    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        return {dns.name.from_text(self.name): dns.tsig.Key(
            self.name, self.secret, ALGORITHMS[self.algorithm])}

    @property
    def keyname(self) -> dns.name.Name:
        return dns.name.from_text(self.name)


def _fail(path: str, reason: str) -> InputError:
    return InputError(f"TSIG key file {path}", "dns.tsig_key_file", reason, code="dns_tsig")


def _make(path: str, name: str, algorithm: str, secret: str) -> TsigKey:
    algorithm = algorithm.lower().rstrip(".")
    if algorithm not in ALGORITHMS:
        raise _fail(path, f"unknown algorithm {algorithm!r} (known: "
                          f"{', '.join(sorted(ALGORITHMS))})")
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(path, f"the secret of key {name!r} is not valid base64") from None
    if not raw:
        raise _fail(path, f"the secret of key {name!r} is empty")
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException:
        raise _fail(path, f"key name {name!r} is not a valid DNS name") from None
    return TsigKey(name, algorithm, raw)


def parse(text: str, path: str = "<text>") -> TsigKey:
    """The first key in ``text``. Errors name the file and key, never the secret."""
    m = _BIND.search(text)
    if m is not None:
        stmts = {s.group("kw"): s.group("val") for s in _STMT.finditer(m.group("body"))}
        if "secret" not in stmts:
            raise _fail(path, f"key {m.group('name')!r} has no secret statement")
        return _make(path, m.group("name"), stmts.get("algorithm", DEFAULT_ALGORITHM),
                     stmts["secret"])
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    if len(lines) == 1:
        parts = lines[0].split(":")
        if len(parts) == 3:
            return _make(path, parts[0], parts[1], parts[2])
        if len(parts) == 2:
            return _make(path, parts[0], DEFAULT_ALGORITHM, parts[1])
    raise _fail(path, 'expected key "name" { algorithm ...; secret "..."; }; or one line '
                      "name:algorithm:secret")


def load(path: str) -> TsigKey:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise _fail(path, f"cannot read: {exc.strerror}") from exc
    return parse(text, path)
