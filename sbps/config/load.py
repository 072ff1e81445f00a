"""Loading the configuration: TOML file, then environment, then flags; validated once.

Owns parsing and validation of values against ``schema``. Every error names the key, the
bad value and what is allowed. Never reads secret files: secrets stay paths here. Must not
log; warnings are returned to the caller, which decides where they go.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbps.config.choices import AccessMode, BackendKind, CatalogAuth, DnsMode
from sbps.config.schema import DEFAULT_PATH, DEPRECATED_ENV, ENV_PREFIX, Config
from sbps.core.errors import ConfigError, ConfigErrors

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
               "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12,
               "tb": 10**12, "tib": 2**40}


@dataclass(frozen=True)
class Key:
    """One key of the definition, with everything needed to parse and document it."""

    section: str
    name: str
    type: Any
    default: Any
    help: str
    kind: str
    choices: tuple[str, ...]
    min: float | None
    max: float | None
    secret_path: bool
    alias: str

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.name.upper()}"


def keys() -> list[Key]:
    """Every key of the definition, in declaration order."""
    out: list[Key] = []
    for sect in dataclasses.fields(Config):
        cls = typing.get_type_hints(Config)[sect.name]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            m = f.metadata
            out.append(Key(sect.name, f.name, hints[f.name], f.default, m["help"], m["kind"],
                           m["choices"], m["min"], m["max"], m["secret_path"], m["alias"]))
    return out


@dataclass(frozen=True)
class Loaded:
    """The frozen configuration, where each value came from, and load-time warnings."""

    config: Config
    sources: Mapping[str, str]
    warnings: tuple[str, ...]
    path: str
    file_read: bool = True


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not m:
        raise ValueError("a duration: seconds, or a number with ms, s, m, h or d")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError("a size: bytes, or a number with K, M, G, T (or KiB, MiB, GiB, TiB)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def _convert(key: Key, raw: Any, from_env: bool) -> Any:
    """Turn a TOML value or an environment string into the key's type, or raise ValueError."""
    t = key.type
    if t is bool:
        if isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str):
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        raise ValueError("true or false")
    if t == tuple[str, ...]:
        if from_env and isinstance(raw, str):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            return tuple(raw)
        raise ValueError("a list of strings" + (" (comma-separated)" if from_env else ""))
    if key.kind == "duration":
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            if raw.strip().startswith("-"):
                return -parse_duration(raw.strip()[1:])
            return parse_duration(raw)
        raise ValueError("a duration: seconds, or a string such as \"30s\" or \"10m\"")
    if key.kind == "size":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str):
            return parse_size(raw)
        raise ValueError("a size: bytes, or a string such as \"16MiB\"")
    if t is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str) and re.fullmatch(r"\s*-?\d+\s*", raw):
            return int(raw)
        raise ValueError("a whole number")
    if t is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if from_env and isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                pass
        raise ValueError("a number")
    if isinstance(raw, str):
        if "\x00" in raw or any(ord(c) < 32 and c not in "\t" for c in raw):
            raise ValueError("text without control characters")
        return raw
    raise ValueError("a string")


def _check_bounds(key: Key, value: Any) -> None:
    if key.choices and value not in key.choices:
        raise ValueError("one of " + ", ".join(key.choices))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if key.min is not None and value < key.min:
            raise ValueError(f"at least {key.min:g}" + (f" and at most {key.max:g}"
                                                       if key.max is not None else ""))
        if key.max is not None and value > key.max:
            raise ValueError(f"at most {key.max:g}")
    if key.kind == "url" and value and not re.match(r"^[a-z][a-z0-9+.-]*://[^\s]+$", value):
        raise ValueError("a URL such as https://host[:port][/path]")


def _set(values: dict[str, Any], sources: dict[str, str], key: Key, raw: Any, source: str,
         from_env: bool, errors: list[ConfigError] | None = None) -> None:
    """Set one key; a bad value raises, or is added to ``errors`` when given (so that a
    file is reported whole, not one error per run)."""
    try:
        value = _convert(key, raw, from_env)
        _check_bounds(key, value)
        if key.choices:
            value = key.type(value)
    except ValueError as exc:
        err = ConfigError(key.dotted, raw,
                          f"expected {exc}", source=source)
        if errors is None:
            raise err from None
        errors.append(err)
        return
    values[key.dotted] = value
    sources[key.dotted] = source


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _read_file(path: str, by_key: dict[str, Key], values: dict[str, Any],
               sources: dict[str, str], errors: list[ConfigError]) -> None:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(file)", path, f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        # tomllib decodes the whole file first; TOML files are UTF-8.
        raise ConfigError("(file)", path, f"not valid UTF-8 at byte {exc.start}: TOML files "
                          "are UTF-8") from None
    except OSError as exc:
        raise ConfigError("--config", path, f"cannot read: {exc.strerror}") from None
    source = f"file {path}"
    sections = sorted({k.section for k in by_key.values()})
    for sect, body in data.items():
        if sect not in sections:
            errors.append(ConfigError(sect, None, "unknown section; sections are "
                                      + ", ".join(sections) + _suggest(sect, sections),
                                      source=source, show_value=False))
            continue
        if not isinstance(body, dict):
            errors.append(ConfigError(sect, body, "expected a [section] table", source=source))
            continue
        names = [k.name for k in by_key.values() if k.section == sect]
        for name, raw in body.items():
            key = by_key.get(f"{sect}.{name}")
            if key is None:
                hint = _suggest(name, names)
                if f"{name}_file" in names:
                    hint = f"; secrets are given as files: use {name}_file"
                # The value of an unknown key may be a secret put in the wrong place: it is
                # never repeated.
                errors.append(ConfigError(f"{sect}.{name}", None, "unknown key" + hint,
                                          source=source, show_value=False))
                continue
            _set(values, sources, key, raw, source, from_env=False, errors=errors)


def _read_env(env: Mapping[str, str], by_key: dict[str, Key], values: dict[str, Any],
              sources: dict[str, str], warnings: list[str],
              errors: list[ConfigError]) -> None:
    by_env = {k.env: k for k in by_key.values()}
    by_alias = {ENV_PREFIX + k.alias: k for k in by_key.values() if k.alias}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        key = by_env.get(name)
        if key is not None:
            _set(values, sources, key, env[name], f"env {name}", from_env=True, errors=errors)
            continue
        key = by_alias.get(name)
        if key is not None:
            if key.env in env:
                warnings.append(f"{name} is ignored: {key.env} is also set and wins")
                continue
            raw = _field_bool(name, key, env[name], warnings) if key.type is bool \
                else env[name]
            _set(values, sources, key, raw, f"env {name}", from_env=True, errors=errors)
            continue
        rest = name[len(ENV_PREFIX):]
        for old, replacement in DEPRECATED_ENV.items():
            if rest == old or (old.endswith("_") and rest.startswith(old)):
                warnings.append(f"{name} is no longer used; replaced by {replacement}")
                break
        else:
            warnings.append(f"{name} is not a known setting and is ignored"
                            + _suggest(name, sorted(by_env)))


def _field_bool(name: str, key: Key, text: str, warnings: list[str]) -> str:
    """A field agent's boolean variable means what it meant to the field agent: exactly
    ``true`` is true, any other text false (``marshal/lib/config.py``, IMS_TAGGING:
    ``if KV['IMS_TAGGING'] == "true"``), so ``True``, ``1`` or ``yes`` select what the
    field selected. Said once at start where sbps's own reading would differ."""
    value = "true" if text == "true" else "false"
    if text.strip().lower() in ("1", "true", "yes", "on") and value == "false":
        warnings.append(f"{name}={text!r} means false, as it did for the field agent (only "
                        f"exactly 'true' is true); set {key.env} to choose otherwise")
    return value


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _cross_checks(c: Config, sources: Mapping[str, str]) -> None:
    """The rules between keys, on the typed configuration."""
    def fail(key: str, allowed: str) -> None:
        section, name = key.split(".")
        raise ConfigError(key, getattr(getattr(c, section), name), allowed,
                          source=sources.get(key, "default"))

    t = c.target
    acl, tgt, lio = (t.access is AccessMode.ACL, t.backend is BackendKind.TGT,
                     t.backend is BackendKind.LIO)
    if t.lun_min > t.lun_max:
        fail("target.lun_max", f"must not be below target.lun_min ({t.lun_min})")
    if t.lun_max > 255 and acl:
        fail("target.lun_max", "at most 255 with target.access = acl (in acl mode the mapped "
             "LUN number equals the LUN id, and explicit ACLs map numbers up to 255 only)")
    if t.lun_max > 255 and tgt:
        fail("target.lun_max", "at most 255 with target.backend = tgt (tgt addresses higher "
             "ids in flat space)")
    if tgt and acl and not t.initiators:
        fail("target.initiators", "required with target.access = acl on target.backend = tgt")
    if tgt and acl and t.tenant_map_file:
        fail("target.tenant_map_file", "not with target.backend = tgt: tgt binds initiators "
             "per target and cannot mask LUNs per initiator, so tenants cannot be kept apart; "
             "use target.backend = lio, or target.initiators alone")
    if lio and acl and not t.initiators and not t.tenant_map_file:
        fail("target.initiators", "target.initiators or target.tenant_map_file is required "
             "with target.access = acl (otherwise no initiator may log in)")
    if lio:
        for entry in t.initiators:
            if not entry.startswith(("iqn.", "eui.", "naa.")):
                fail("target.initiators", "initiator names (iqn./eui./naa.) or prefixes "
                     "ending in * with target.backend = lio (LIO ACLs are per name)")
    if bool(t.chap_user_file) != bool(t.chap_secret_file):
        fail("target.chap_secret_file", "target.chap_user_file and target.chap_secret_file "
             "go together")
    if bool(t.chap_mutual_user_file) != bool(t.chap_mutual_secret_file):
        fail("target.chap_mutual_secret_file", "target.chap_mutual_user_file and "
             "target.chap_mutual_secret_file go together")
    if t.chap_mutual_user_file and not t.chap_user_file:
        fail("target.chap_mutual_user_file", "mutual CHAP needs one-way CHAP too "
             "(target.chap_user_file and target.chap_secret_file)")
    if c.catalog.auth is CatalogAuth.TOKEN_FILE and not c.catalog.token_file:
        fail("catalog.token_file", "required with catalog.auth = token-file")
    if c.dns.mode is DnsMode.RFC2136 and not c.dns.tsig_key_file:
        fail("dns.tsig_key_file", "required with dns.mode = rfc2136 (updates are signed)")
    if c.dns.mode is DnsMode.PDNS and not c.dns.pdns_api_key_file:
        fail("dns.pdns_api_key_file", "required with dns.mode = pdns")
    if bool(c.http.tls_cert_file) != bool(c.http.tls_key_file):
        fail("http.tls_key_file", "http.tls_cert_file and http.tls_key_file go together")
    if c.http.max_long_polls * 2 > c.http.max_connections:
        fail("http.max_long_polls", "at most half of http.max_connections (the rest serve "
             "health checks, metrics and the catalog)")
    if c.reconcile.backoff_initial > c.reconcile.backoff_max:
        fail("reconcile.backoff_max", "must not be below reconcile.backoff_initial")
    for name in c.dns.networks:
        if name not in ("hsn", "nmn"):
            fail("dns.networks", "a list of hsn and nmn")
    for name in c.s3.allowed_buckets:
        if not _BUCKET_RE.match(name) or ".." in name:
            fail("s3.allowed_buckets", f"{name!r} is not an S3 bucket name (3-63 lowercase "
                 "letters, digits, '.' or '-'); a list of bucket names")


def load(path: str | None = None, env: Mapping[str, str] | None = None,
         flags: Mapping[str, Any] | None = None) -> Loaded:
    """Build the configuration: defaults, then the file, then environment, then flags.

    With ``path`` None the default file is read if it exists; a path that was asked for
    explicitly must exist.
    """
    env = os.environ if env is None else env
    all_keys = keys()
    by_key = {k.dotted: k for k in all_keys}
    values: dict[str, Any] = {k.dotted: k.default for k in all_keys}
    sources: dict[str, str] = {k.dotted: "default" for k in all_keys}
    warnings: list[str] = []
    chosen = path if path is not None else DEFAULT_PATH
    file_read = path is not None or Path(DEFAULT_PATH).exists()
    errors: list[ConfigError] = []
    if file_read:
        _read_file(chosen, by_key, values, sources, errors)
    _read_env(env, by_key, values, sources, warnings, errors)
    for dotted, raw in (flags or {}).items():
        _set(values, sources, by_key[dotted], raw, "flag", from_env=False, errors=errors)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    sections: dict[str, dict[str, Any]] = {}
    for k in all_keys:
        sections.setdefault(k.section, {})[k.name] = values[k.dotted]
    hints = typing.get_type_hints(Config)
    config = Config(**{s: hints[s](**body) for s, body in sections.items()})
    _cross_checks(config, sources)
    return Loaded(config, dict(sources), tuple(warnings), chosen, file_read)
