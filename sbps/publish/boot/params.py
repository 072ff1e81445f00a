"""Kernel boot parameters: generate and parse ``root=sbps-s3:...``.

Owns the parameter grammar compatible with BOS and the field clients, and the expected
device identity (serial, WWID) a parameter set points at. Output formats built on it
(command line, BOS boot set, SAT bootprep, JSON) live in ``bootformats``. Pure; must not
do I/O.

Grammar (what BOS builds from ``rootfs_provider: sbps`` and its passthrough)::

    root=sbps-s3:<s3 path>:<etag>:<transport>:<schema>:<iqn prefix>:<SRV name>:<timeout>[:<ramroot>]

The path holds the colon of ``s3://``, and an IQN prefix may hold colons too, so the text
is not split naively: the path is ``s3:`` plus the next token (a key holding a colon is
refused, since neither this parser nor the field client could find where it ends), and
the IQN prefix runs up to the SRV name, the first token that starts with ``_`` (a
character no iSCSI name may contain). The grammar, its sources and the forms the boot
services emit are documented once in docs/bootparams.md; tests/vectors/bootparams.json
holds the vectors this parser and the initramfs module (contrib/dracut) both pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sbps.core import identity
from sbps.core.errors import InputError
from sbps.core.model import Identity, S3Url
from sbps.sources.s3 import parse_url

PROVIDER = "sbps-s3"
TRANSPORT = "sbps"
SCHEMA = "v1"
DEFAULT_TIMEOUT = 300
MAX_TIMEOUT = 86400
NETWORKS = ("hsn", "nmn")
OBJ = "root="

# An S3 ETag (MD5, or MD5-<parts>) in either case: the catalog exports images whose
# manifest etag is uppercase, and the etag is copied verbatim into the identity key, so
# its case is kept, never folded (docs/bootparams.md).
_ETAG_RE = re.compile(r"^[0-9a-fA-F]{32}(-([1-9][0-9]{0,3}|10000))?$")
# IQNs compare case-insensitively (RFC 3720 3.2.6.1): an uppercase prefix is accepted.
_IQN_PREFIX_RE = re.compile(
    r"^iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[a-z0-9.-]+)*$",
    re.IGNORECASE)
_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_SRV_RE = re.compile(r"^_sbps-([a-z0-9]+)\._tcp\.(.+)$")
# The client reads any ramroot value but "0" (or empty) as true (docs/bootparams.md); these
# mean true too, which would surprise an admin: parsed as true, with a warning.
_FALSE_WORDS = {"false", "no", "off", "n", "f", "none", "disabled"}


def _bad(field: str, reason: str) -> InputError:
    return InputError(OBJ, field, reason)


@dataclass(frozen=True)
class BootParams:
    """One valid set of SBPS boot parameters; every field is checked on construction."""

    path: S3Url
    etag: str
    srv_name: str
    iqn_prefix: str = identity.IQN_PREFIX
    timeout: int = DEFAULT_TIMEOUT
    ramroot: bool = False
    transport: str = TRANSPORT
    schema: str = SCHEMA
    #: Warnings about legal but unusual input (a ramroot value that reads as false).
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        check_path(str(self.path))
        check_etag(self.etag)
        check_transport(self.transport)
        check_schema(self.schema)
        check_iqn_prefix(self.iqn_prefix)
        check_srv_name(self.srv_name)
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, int):
            raise _bad("timeout", f"{self.timeout!r} is not a whole number of seconds")
        check_timeout(self.timeout)

    @property
    def identity(self) -> Identity:
        """The rootfs identity the target derives from the same path and etag."""
        return identity.rootfs(self.path, self.etag)

    @property
    def serial(self) -> str:
        return self.identity.serial

    @property
    def wwid(self) -> str:
        return self.identity.wwid

    @property
    def network(self) -> str:
        m = _SRV_RE.match(self.srv_name)
        return m.group(1) if m else ""

    @property
    def domain(self) -> str:
        """``<system>.<site-domain>``, the part of the SRV name after ``_tcp.``."""
        m = _SRV_RE.match(self.srv_name)
        return m.group(2) if m else ""


def check_path(text: str) -> S3Url:
    if not text.startswith("s3://"):
        raise _bad("path", f"{text!r} does not start with s3://")
    if ":" in text[len("s3://"):]:
        raise _bad("path", f"{text!r} holds a ':' after s3://, which the root= grammar "
                   "cannot carry")
    if any(c.isspace() for c in text):
        raise _bad("path", f"{text!r} holds white space, which ends a kernel parameter")
    try:
        return parse_url(text)
    except ValueError as exc:
        raise _bad("path", str(exc)) from exc


def check_etag(text: str) -> str:
    if not text:
        raise _bad("etag", "empty: the rootfs identity needs the S3 ETag of the rootfs")
    if not _ETAG_RE.match(text):
        raise _bad("etag", f"{text!r} is not an S3 ETag (32 hex digits, with -<parts> for "
                   "a multipart upload)")
    return text


def check_transport(text: str) -> str:
    if text != TRANSPORT:
        raise _bad("transport", f"{text!r}: only {TRANSPORT!r} is served by SBPS")
    return text


def check_schema(text: str) -> str:
    if text != SCHEMA:
        raise _bad("schema", f"{text!r}: unknown schema version; only {SCHEMA!r} exists")
    return text


def check_iqn_prefix(text: str) -> str:
    if not _IQN_PREFIX_RE.match(text) or "::" in text:
        raise _bad("iqn_prefix", f"{text!r} is not an IQN prefix such as "
                   f"{identity.IQN_PREFIX!r} (iqn.YYYY-MM.<reversed domain>[:<name>])")
    if len(text) > 223 - 2:
        raise _bad("iqn_prefix", f"{text!r} leaves no room for the target name in 223 "
                   "characters")
    return text


def check_label(text: str, field: str) -> str:
    if not _LABEL_RE.match(text):
        raise _bad(field, f"{text!r} is not a DNS label (1-63 letters, digits or '-', "
                   "not starting or ending with '-')")
    return text


def check_domain(text: str, field: str) -> str:
    if not text:
        raise _bad(field, "empty")
    if len(text) > 253:
        raise _bad(field, f"{text!r} is longer than 253 characters")
    for label in text.split("."):
        check_label(label, field)
    return text


def check_srv_name(text: str) -> str:
    m = _SRV_RE.match(text)
    if not m:
        raise _bad("srv_name", f"{text!r} is not an SBPS SRV name "
                   "(_sbps-<network>._tcp.<system>.<site-domain>)")
    if m.group(1) not in NETWORKS:
        raise _bad("srv_name", f"{text!r}: network {m.group(1)!r} is not one of "
                   + ", ".join(NETWORKS))
    domain = m.group(2)
    check_domain(domain, "srv_name")
    if "." not in domain:
        raise _bad("srv_name", f"{text!r}: the domain needs the system name and the site "
                   "domain (<system>.<site-domain>)")
    return text


def check_timeout(value: int) -> int:
    if not 1 <= value <= MAX_TIMEOUT:
        raise _bad("timeout", f"{value} is outside 1..{MAX_TIMEOUT} seconds")
    return value


def srv_name(network: str, system: str, site_domain: str) -> str:
    """``_sbps-<network>._tcp.<system>.<site-domain>``; errors name ``network``,
    ``system`` or ``site_domain``."""
    if network not in NETWORKS:
        raise _bad("network", f"{network!r} is not one of " + ", ".join(NETWORKS))
    if not system:
        raise _bad("system", "empty")
    check_label(system, "system")
    check_domain(site_domain, "site_domain")
    return f"_sbps-{network}._tcp.{system}.{site_domain}"


def passthrough(params: BootParams) -> str:
    """The BOS ``rootfs_provider_passthrough`` value for these parameters."""
    text = (f"{params.transport}:{params.schema}:{params.iqn_prefix}:{params.srv_name}:"
            f"{params.timeout}")
    return text + (":1" if params.ramroot else "")


def generate(params: BootParams) -> str:
    """The ``root=`` kernel parameter, exactly as BOS builds it."""
    return f"root={PROVIDER}:{params.path}:{params.etag}:{passthrough(params)}"


def tokens(cmdline: str) -> list[str]:
    """Split a kernel command line as the kernel does: on white space outside quotes."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for c in cmdline:
        if c == '"':
            quoted = not quoted
        if c.isspace() and not quoted:
            if current:
                out.append("".join(current))
                current = []
            continue
        current.append(c)
    if current:
        out.append("".join(current))
    return out


def _root_value(text: str) -> str:
    words = tokens(text.strip())
    if not words:
        raise _bad("root", "empty input")
    # The kernel accepts a quote before the name as well as before the value.
    words = [w[1:-1] if w[0] == '"' and w.endswith('"') and "=" in w else w for w in words]
    roots = [w for w in words if w.startswith("root=")]
    if roots:
        # The kernel and dracut both use the last root= on the command line.
        value = roots[-1][len("root="):]
    elif len(words) == 1:
        value = words[0]
    else:
        raise _bad("root", "the command line has no root= parameter")
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _parse_timeout(text: str) -> int:
    if text == "":
        return DEFAULT_TIMEOUT  # BOS documents an empty timeout as the default
    if not text.isascii() or not text.isdigit():
        raise _bad("timeout", f"{text!r} is not a whole number of seconds")
    return check_timeout(int(text))


def _parse_ramroot(text: str) -> tuple[bool, tuple[str, ...]]:
    """The field client's reading (any value but '0' or empty is true), and a warning
    where that reading would surprise whoever wrote it."""
    if text in ("", "0"):
        return False, ()
    if text == "1":
        return True, ()
    hint = "reads as false to a person" if text.lower() in _FALSE_WORDS else "is unusual"
    return True, (f"ramroot {text!r} {hint}, but the client reads any value but '0' as "
                  "true: the root is copied to RAM; write 1, 0, or leave it out",)


def parse(text: str) -> BootParams:
    """Parse ``root=sbps-s3:...``, the value without ``root=``, or a whole command line.

    Every field is validated; an error is an :class:`InputError` whose ``field`` names
    the bad one (``provider``, ``path``, ``etag``, ``transport``, ``schema``,
    ``iqn_prefix``, ``srv_name``, ``timeout``, ``ramroot`` or ``root``).
    """
    value = _root_value(text)
    provider, sep, rest = value.partition(":")
    if provider != PROVIDER:
        if not sep:
            raise _bad("provider", f"{value!r} is not a {PROVIDER} root parameter")
        raise _bad("provider", f"{provider!r} is not {PROVIDER!r}: this root= is for "
                   "another root file system provider")
    parts = rest.split(":")
    if parts[0] != "s3" or len(parts) < 2 or not parts[1].startswith("//"):
        raise _bad("path", f"{rest.split(':', 1)[0]!r} does not start with s3://")
    path = check_path(f"s3:{parts[1]}")
    fields = parts[2:]

    def take(index: int, name: str) -> str:
        if index >= len(fields):
            raise _bad(name, "missing")
        return fields[index]

    first = take(0, "etag")
    if "/" in first or (not _ETAG_RE.match(first)
                        and any(_ETAG_RE.match(f) for f in fields[1:3])):
        raise _bad("path", f"{path}:{fields[0]!r} holds a ':' after s3://, which the "
                   "root= grammar cannot carry")
    etag = check_etag(fields[0])
    check_transport(take(1, "transport"))
    check_schema(take(2, "schema"))
    tail = fields[3:]
    srv_at = next((i for i, f in enumerate(tail) if f.startswith("_")), None)
    if srv_at is None:
        raise _bad("srv_name" if tail else "iqn_prefix",
                   "missing (no _sbps-<network>._tcp.<domain> field)" if tail else "missing")
    if srv_at == 0:
        raise _bad("iqn_prefix", "missing before the SRV name")
    iqn_prefix = check_iqn_prefix(":".join(tail[:srv_at]))
    srv = check_srv_name(tail[srv_at])
    after = tail[srv_at + 1:]
    if not after:
        raise _bad("timeout", "missing")
    if len(after) > 2:
        raise _bad("ramroot", f"unexpected text after the ramroot field: "
                   f"{':'.join(after[2:])!r}")
    timeout = _parse_timeout(after[0])
    ramroot, notes = _parse_ramroot(after[1]) if len(after) == 2 else (False, ())
    return BootParams(path=path, etag=etag, srv_name=srv, iqn_prefix=iqn_prefix,
                      timeout=timeout, ramroot=ramroot, notes=notes)
