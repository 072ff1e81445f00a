"""Rendering the configuration for people: the documented example file and ``config show``.

Owns presentation only. The example file (``contrib/marshal.example.toml``) and the
configuration reference in the README are generated here from the definition, so they
cannot drift. Values that could carry credentials are redacted; secret files are shown as
paths and never opened.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from sbps.config.load import Key, Loaded, keys
from sbps.config.schema import DEFAULT_PATH, ENV_PREFIX

HEADER = f"""\
# sbps marshal configuration ({DEFAULT_PATH}).
#
# Generated from the configuration definition by `sbpsctl config example`: do not edit by
# hand, it is checked against the code. Every key is shown commented out with its default.
# Each key can also be set in the environment as SBPS_MARSHAL_<SECTION>_<KEY>; the field
# agent's names (SBPS_MARSHAL_SCAN_FREQUENCY, ...) are accepted as aliases. Durations take
# seconds or units (30s, 10m, 24h, 7d); sizes take bytes or units (16MiB, 100G). Secrets are
# never written here: keys ending in _file name a file that holds the secret.
"""


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if not float(value).is_integer() else str(int(value))
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def example() -> str:
    """The commented example configuration with every key, its default and its env name."""
    out = [HEADER]
    section = ""
    for k in keys():
        if k.section != section:
            section = k.section
            out.append(f"\n[{section}]\n")
        out.append(f"# {k.help}\n")
        extra = [f"env {k.env}"]
        if _other_alias(k):
            extra.append(f"alias {ENV_PREFIX}{k.alias}")
        if k.choices:
            extra.append("one of " + "|".join(k.choices))
        if k.secret_path:
            extra.append("file holding a secret")
        out.append(f"# ({'; '.join(extra)})\n")
        out.append(f"#{k.name} = {toml_value(k.default)}\n")
    return "".join(out)


def _other_alias(k: Key) -> bool:
    """The field agent's name, when it differs from ours (S3_HOST is both)."""
    return bool(k.alias) and ENV_PREFIX + k.alias != k.env


def reference_markdown() -> str:
    """The configuration reference table for the README."""
    rows = ["| key | default | environment | meaning |", "|---|---|---|---|"]
    for k in keys():
        env = f"`{k.env}`" + (f" (alias `{ENV_PREFIX}{k.alias}`)" if _other_alias(k) else "")
        meaning = k.help + (" One of " + ", ".join(k.choices) + "." if k.choices else "")
        rows.append(f"| `{k.dotted}` | `{toml_value(k.default)}` | {env} | {meaning} |")
    return "\n".join(rows) + "\n"


def redact(key: Key, value: Any) -> Any:
    """Hide anything that could be a credential; secret *paths* stay visible."""
    if isinstance(value, str) and "://" in value:
        return re.sub(r"://[^/@\s]*@", "://<redacted>@", value)
    return value


def effective(loaded: Loaded) -> list[dict[str, Any]]:
    """One row per key: key, value (redacted), source, environment name."""
    cfg = loaded.config
    rows = []
    for k in keys():
        value = getattr(getattr(cfg, k.section), k.name)
        rows.append({"key": k.dotted, "value": redact(k, value),
                     "source": loaded.sources[k.dotted], "env": k.env,
                     "secret_file": k.secret_path})
    return rows


def as_dict(loaded: Loaded) -> dict[str, dict[str, Any]]:
    """The effective configuration as nested sections, redacted (for /debug/config)."""
    by = {k.dotted: k for k in keys()}
    out: dict[str, dict[str, Any]] = {}
    for sect, body in dataclasses.asdict(loaded.config).items():
        out[sect] = {n: redact(by[f"{sect}.{n}"], v) for n, v in body.items()}
        out[sect] = {n: list(v) if isinstance(v, tuple) else v for n, v in out[sect].items()}
    return out


def show_text(loaded: Loaded) -> str:
    rows = effective(loaded)
    width = max(len(r["key"]) for r in rows)
    absent = "" if loaded.file_read else " (absent: defaults and environment only)"
    lines = [f"# configuration file: {loaded.path}{absent}"]
    lines += [f"# warning: {w}" for w in loaded.warnings]
    for r in rows:
        lines.append(f"{r['key']:<{width}}  {toml_value(r['value'])}  ({r['source']})")
    return "\n".join(lines) + "\n"


def show_json(loaded: Loaded) -> str:
    rows = [dict(r, value=list(r["value"]) if isinstance(r["value"], tuple) else r["value"])
            for r in effective(loaded)]
    return json.dumps({"path": loaded.path, "file_read": loaded.file_read, "warnings": list(loaded.warnings),
                       "settings": rows}, indent=2) + "\n"
